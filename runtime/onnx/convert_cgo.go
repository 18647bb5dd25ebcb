//go:build cgo

package onnx

import (
	"bytes"
	"fmt"
	"reflect"
	"runtime"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/tensor"
)

// batch holds the ONNX Runtime values of one Run and frees them in release.
// Batches are recycled per model (see model.getBatch), so every slice here is
// scratch that must not escape to the caller.
//
// Numeric inputs are wrapped without copying: ONNX Runtime reads the tensor's
// Data in place. Numeric outputs whose shape follows from the inputs are
// preallocated in Go memory that ONNX Runtime writes into (see prepareOutputs).
// That memory is pinned (cgo forbids C keeping unpinned Go pointers) until
// release, which runs after the session has finished.
type batch struct {
	in      []ort.Value
	out     []ort.Value
	ordered []*tensor.Tensor // inputs in session order
	want    []int            // requested session outputs, in request order
	// outData[si] is the preallocated data of session output si, nil when ONNX
	// Runtime allocates it; outShape[si] is its shape.
	outData  [][]byte
	outShape [][]int64
	// scratch backs outputs that were computed but not requested; it is reused
	// by the next Run of this batch.
	scratch  []uint64
	shapeBuf []int64          // resolved output shapes, before they are copied out
	dims     map[string]int64 // dim_param -> size in this batch
	pin      runtime.Pinner
}

func newBatch(nIn, nOut int) *batch {
	return &batch{
		in: make([]ort.Value, nIn), ordered: make([]*tensor.Tensor, nIn),
		out: make([]ort.Value, nOut), outData: make([][]byte, nOut), outShape: make([][]int64, nOut),
		want: make([]int, 0, nOut),
	}
}

// release destroys the ORT values and unpins memory; the batch can be reused.
func (b *batch) release() {
	destroyValues(b.in)
	b.releaseOutputs()
	b.pin.Unpin()
	clear(b.ordered)
	b.want = b.want[:0]
}

// releaseOutputs destroys the output values and forgets the preallocated memory
// (which belongs to the caller once Run returns).
func (b *batch) releaseOutputs() {
	destroyValues(b.out)
	clear(b.outData)
	clear(b.outShape)
	b.shapeBuf = b.shapeBuf[:0]
}

func destroyValues(vs []ort.Value) {
	for i, v := range vs {
		if !isNilValue(v) {
			_ = v.Destroy()
		}
		vs[i] = nil
	}
}

// isNilValue reports whether v is nil, including the typed nils the binding can
// leave in an output when converting it fails.
func isNilValue(v ort.Value) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// inputValue wraps t (already validated against the signature) as an ORT value.
func (b *batch) inputValue(t *tensor.Tensor) (ort.Value, error) {
	if len(t.Shape) == 0 {
		return nil, errs.New(errs.Unimplemented,
			"input %s: scalar (rank 0) tensors are not supported by the ONNX runtime", t.Name).WithField(t.Name)
	}
	// The binding copies the shape into ONNX Runtime (and clones it for itself):
	// no need for a copy of our own.
	shape := ort.Shape(t.Shape)
	if t.DataType == tensor.Bytes {
		strs := make([]string, len(t.Strings))
		for i, s := range t.Strings {
			// The binding hands strings to ONNX Runtime as C strings.
			if bytes.IndexByte(s, 0) >= 0 {
				return nil, errs.New(errs.InvalidArgument,
					"input %s: element %d contains a NUL byte, which ONNX Runtime string inputs cannot hold here", t.Name, i).WithField(t.Name)
			}
			strs[i] = string(s)
		}
		st, err := ort.NewStringTensor(shape)
		if err != nil {
			return nil, fmt.Errorf("onnx: input %s: %w", t.Name, err)
		}
		if err := st.SetContents(strs); err != nil {
			_ = st.Destroy()
			return nil, fmt.Errorf("onnx: input %s: %w", t.Name, err)
		}
		return st, nil
	}
	data := t.Data
	if len(data) == 0 {
		// Zero elements: the binding wants at least one byte; ORT reads none.
		data = alignedBytes(8)
	} else if uintptr(unsafe.Pointer(unsafe.SliceData(data)))%uintptr(t.DataType.Size()) != 0 {
		// E.g. a slice of a request body at an odd offset: kernels expect natural alignment.
		data = append(alignedBytes(len(data))[:0], data...)
	}
	b.pin.Pin(unsafe.SliceData(data))
	v, err := ort.NewCustomDataTensor(shape, data, ort.TensorElementDataType(onnxElemType(t.DataType)))
	if err != nil {
		return nil, fmt.Errorf("onnx: input %s: %w", t.Name, err)
	}
	return v, nil
}

// maxPreallocBytes bounds one preallocated output. Larger ones are left to ONNX
// Runtime.
const maxPreallocBytes = 1 << 30

// prepareOutputs preallocates session outputs in Go memory, so that ONNX Runtime
// writes the results where the caller gets them: no ORT allocation, no
// conversion through the binding (about ten cgo calls per output) and no copy.
//
// FP16 and BF16 outputs are always preallocated: onnxruntime_go v1.27.0 cannot
// convert them when ONNX Runtime allocates them (it copies one byte per element).
// Other numeric outputs are preallocated when all is set and their shape follows
// from the inputs' (dim_params shared with an input); the rest, and every
// BYTES output, are left to ONNX Runtime.
//
// Requested outputs share one arena, allocated here and owned by the caller
// after Run; unrequested ones (the session computes every output) use b.scratch.
func (b *batch) prepareOutputs(m *model, all bool) error {
	b.resolveDims(m)
	var arenaWords, scratchWords int
	var shapeLen int
	requested := func(si int) bool {
		for _, w := range b.want {
			if w == si {
				return true
			}
		}
		return false
	}
	// First pass: shapes and sizes. Shapes of requested outputs are counted so
	// they can share one allocation too.
	type planned struct {
		shape []int64
		size  int
		req   bool
	}
	var plan [8]planned
	plans := plan[:0]
	if len(m.sessOuts) > len(plan) {
		plans = make([]planned, 0, len(m.sessOuts))
	}
	for si, oi := range m.sessOuts {
		spec := m.sig.Outputs[oi]
		half := spec.DataType == tensor.FP16 || spec.DataType == tensor.BF16
		if !half && (!all || spec.DataType == tensor.Bytes) {
			plans = append(plans, planned{size: -1})
			continue
		}
		start := len(b.shapeBuf)
		var ok bool
		b.shapeBuf, ok = resolveShapeInto(b.shapeBuf, spec.Shape, m.info.outDimParams[oi], b.dims)
		shape := b.shapeBuf[start:len(b.shapeBuf):len(b.shapeBuf)]
		if !ok {
			b.shapeBuf = b.shapeBuf[:start]
			if half {
				return errs.New(errs.Unimplemented,
					"output %s: %s outputs need a shape the runtime can work out from the inputs' (got %s)",
					spec.Name, spec.DataType, tensor.ShapeString(spec.Shape)).WithField(spec.Name)
			}
			plans = append(plans, planned{size: -1})
			continue
		}
		// An empty input can name a huge dim ([2^40,0] holds no data): an
		// output sized from it must not take the process down.
		n, err := tensor.NumElements(shape)
		size := int(n) * spec.DataType.Size()
		if err != nil || size > maxPreallocBytes {
			b.shapeBuf = b.shapeBuf[:start]
			if half {
				return errs.New(errs.TooLarge, "output %s: shape %s is too large",
					spec.Name, tensor.ShapeString(shape)).WithField(spec.Name)
			}
			// ONNX Runtime allocates it, and fails cleanly if it really is that large.
			plans = append(plans, planned{size: -1})
			continue
		}
		words := (max(size, 8) + 7) / 8 // the binding wants at least one byte
		p := planned{shape: shape, size: size, req: requested(si)}
		if p.req {
			arenaWords += words
			shapeLen += len(shape)
		} else {
			scratchWords += words
		}
		plans = append(plans, p)
	}
	// One allocation for the data and the shapes of every requested output.
	var arena []uint64
	var shapes []int64
	if arenaWords > 0 {
		arena = make([]uint64, arenaWords+shapeLen)
		b.pin.Pin(unsafe.SliceData(arena))
		tail := arena[arenaWords:]
		shapes = unsafe.Slice((*int64)(unsafe.Pointer(unsafe.SliceData(tail))), len(tail))[:0]
	}
	if scratchWords > 0 {
		if cap(b.scratch) < scratchWords {
			b.scratch = make([]uint64, scratchWords)
		}
		b.pin.Pin(unsafe.SliceData(b.scratch))
	}
	arenaOff, scratchOff := 0, 0
	for si, p := range plans {
		if p.size < 0 {
			continue
		}
		words := (max(p.size, 8) + 7) / 8
		var mem []uint64
		if p.req {
			mem = arena[arenaOff : arenaOff+words : arenaOff+words]
			arenaOff += words
			// The caller owns the shape: give it a slice of one shared allocation.
			start := len(shapes)
			shapes = append(shapes, p.shape...)
			p.shape = shapes[start:len(shapes):len(shapes)]
		} else {
			mem = b.scratch[scratchOff : scratchOff+words : scratchOff+words]
			scratchOff += words
		}
		buf := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(mem))), words*8)
		spec := m.sig.Outputs[m.sessOuts[si]]
		v, err := ort.NewCustomDataTensor(ort.Shape(p.shape), buf, ort.TensorElementDataType(onnxElemType(spec.DataType)))
		if err != nil {
			return fmt.Errorf("onnx: output %s: %w", spec.Name, err)
		}
		// Full slice expressions: appending to one output must not overwrite the next.
		b.out[si], b.outData[si], b.outShape[si] = v, buf[:p.size:p.size], p.shape
	}
	return nil
}

// resolveDims fills b.dims with the size of each dim_param of the inputs (e.g.
// "batch") in this batch.
func (b *batch) resolveDims(m *model) {
	if !m.hasDimParams {
		return
	}
	if b.dims == nil {
		b.dims = make(map[string]int64, 4)
	}
	clear(b.dims)
	for i, params := range m.info.inDimParams {
		for j, p := range params {
			if p != "" && j < len(b.ordered[i].Shape) {
				b.dims[p] = b.ordered[i].Shape[j]
			}
		}
	}
}

// resolveShapeInto appends the concrete shape of spec to dst. When it is not
// resolvable it returns false and dst possibly with a partial shape appended.
func resolveShapeInto(dst, spec []int64, params []string, dims map[string]int64) ([]int64, bool) {
	if len(spec) == 0 { // unknown rank, or a scalar (which the binding cannot create)
		return dst, false
	}
	for i, d := range spec {
		if d >= 0 {
			dst = append(dst, d)
			continue
		}
		if params[i] == "" {
			return dst, false
		}
		v, ok := dims[params[i]]
		if !ok {
			return dst, false
		}
		dst = append(dst, v)
	}
	return dst, true
}

// outputTensor converts session output si to t. Preallocated outputs are used as
// they are; numeric data that the binding copied into Go memory is used as is
// (no second copy).
func (b *batch) outputTensor(t *tensor.Tensor, si int, spec tensor.TensorSpec) error {
	t.Name = spec.Name
	if d := b.outData[si]; d != nil {
		t.DataType, t.Data, t.Shape = spec.DataType, d, b.outShape[si]
		return nil
	}
	v := b.out[si]
	if isNilValue(v) {
		return fmt.Errorf("onnx: output %s: no value", spec.Name)
	}
	t.Shape = []int64(v.GetShape())
	switch v := v.(type) {
	case *ort.StringTensor:
		strs, err := v.GetContents()
		if err != nil {
			return fmt.Errorf("onnx: output %s: %w", spec.Name, err)
		}
		t.DataType, t.Strings = tensor.Bytes, make([][]byte, len(strs))
		for i, s := range strs {
			t.Strings[i] = []byte(s)
		}
		return nil
	}
	if int(spec.DataType) >= len(outputViews) {
		return fmt.Errorf("onnx: output %s: unsupported datatype %s", spec.Name, spec.DataType)
	}
	if view := outputViews[spec.DataType]; view != nil {
		if d, ok := view(v); ok {
			t.DataType, t.Data = spec.DataType, d
			return nil
		}
	}
	return fmt.Errorf("onnx: output %s: got %T, want %s", spec.Name, v, spec.DataType)
}

// outputViews[dt] views an ONNX Runtime-allocated output of OIP type dt, which
// the binding hands back as an *ort.Tensor of the matching Go type. FP16 and
// BF16 are missing: they are always preallocated (see prepareOutputs).
var outputViews = [...]func(ort.Value) ([]byte, bool){
	tensor.Bool: viewAs[bool], tensor.Uint8: viewAs[uint8], tensor.Uint16: viewAs[uint16],
	tensor.Uint32: viewAs[uint32], tensor.Uint64: viewAs[uint64], tensor.Int8: viewAs[int8],
	tensor.Int16: viewAs[int16], tensor.Int32: viewAs[int32], tensor.Int64: viewAs[int64],
	tensor.FP32: viewAs[float32], tensor.FP64: viewAs[float64], tensor.Bytes: nil,
}

func viewAs[T ort.TensorData](v ort.Value) ([]byte, bool) {
	t, ok := v.(*ort.Tensor[T])
	if !ok {
		return nil, false
	}
	return tensorBytes(t), true
}

// tensorBytes views a tensor's Go-owned data as little-endian bytes. The data
// outlives the ORT value, which is released with the batch.
func tensorBytes[T ort.TensorData](t *ort.Tensor[T]) []byte {
	d := t.GetData()
	if len(d) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(d))), len(d)*int(unsafe.Sizeof(d[0])))
}

// alignedBytes returns n bytes aligned for any element type.
func alignedBytes(n int) []byte {
	words := make([]uint64, (n+7)/8)
	if len(words) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), n)
}
