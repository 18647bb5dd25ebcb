//go:build cgo

package onnx

// #include "nimbus_capi.h"
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/tensor"
)

// batch holds what one Run hands ONNX Runtime and frees it in release.
// Batches are recycled per model (see model.getBatch), so every slice here is
// scratch that must not escape to the caller.
//
// Numeric inputs are wrapped without copying: ONNX Runtime reads the tensor's
// Data in place. Numeric outputs whose shape follows from the inputs (or is
// fixed, scalars included) are preallocated in Go memory that ONNX Runtime
// writes into (see prepareOutputs); the others ONNX Runtime allocates, and
// each is copied once into Go memory. Go memory that C sees is pinned (cgo
// forbids C keeping unpinned Go pointers) until release, which runs after the
// session has finished.
type batch struct {
	ordered []*tensor.Tensor // inputs in signature order; nil for an optional input left out
	want    []int            // requested session outputs, in request order
	// What nimbus_run sees: the inputs given, with their names, and the
	// requested outputs, with theirs.
	in       []C.nimbus_tensor
	inNames  cStrings // the model's C strings: never freed here
	out      []C.nimbus_tensor
	outNames cStrings
	vals     []*C.OrtValue
	// outData[k] is the preallocated data of requested output k, nil when ONNX
	// Runtime allocates it; outShape[k] is its shape.
	outData  [][]byte
	outShape [][]int64
	dims     []int64          // outputs' shapes as ONNX Runtime reports them, maxInlineRank per output
	shapeBuf []int64          // resolved output shapes, before they are copied out
	params   map[string]int64 // dim_param -> size in this batch
	pin      runtime.Pinner
	ran      bool // out holds values ONNX Runtime allocated
}

// maxInlineRank is the rank up to which nimbus_run reports an output's shape
// in the same call; a larger one costs one more.
const maxInlineRank = 8

func newBatch(nIn, nOut int) *batch {
	return &batch{
		ordered: make([]*tensor.Tensor, nIn), want: make([]int, 0, nOut),
		in: make([]C.nimbus_tensor, 0, nIn), inNames: make(cStrings, 0, nIn),
		out: make([]C.nimbus_tensor, 0, nOut), outNames: make(cStrings, 0, nOut),
		vals:    make([]*C.OrtValue, nIn+nOut),
		outData: make([][]byte, 0, nOut), outShape: make([][]int64, 0, nOut),
		dims: make([]int64, nOut*maxInlineRank),
	}
}

// release frees what ONNX Runtime allocated and unpins memory; the batch can
// be reused.
func (b *batch) release() {
	b.releaseOutputs()
	b.pin.Unpin()
	clear(b.ordered)
	clear(b.in) // no stale Go pointers in a pooled batch
	b.in, b.inNames = b.in[:0], b.inNames[:0]
	b.want = b.want[:0]
}

// releaseOutputs frees the output values ONNX Runtime allocated and forgets
// the preallocated memory (which belongs to the caller once Run returns).
func (b *batch) releaseOutputs() {
	if b.ran {
		releaseOutputs(b.out)
		b.ran = false
	}
	clear(b.out)
	clear(b.outData)
	clear(b.outShape)
	b.out, b.outNames = b.out[:0], b.outNames[:0]
	b.outData, b.outShape = b.outData[:0], b.outShape[:0]
	b.shapeBuf = b.shapeBuf[:0]
}

// run runs the session on what prepareInputs and prepareOutputs set up. ro
// may be nil.
func (b *batch) run(m *model, ro *C.OrtRunOptions) error {
	if b.ran {
		releaseOutputs(b.out) // a second run (see model.Run) replaces the first's values
		b.ran = false
	}
	if err := ortRun(m.sess, ro, b.inNames, b.in, b.outNames, b.out, b.vals); err != nil {
		return err
	}
	b.ran = true
	return nil
}

// preallocated reports whether some output is preallocated.
func (b *batch) preallocated() bool {
	for _, d := range b.outData {
		if d != nil {
			return true
		}
	}
	return false
}

// prepareInputs describes each given input (already validated against the
// signature) to C, without copying numeric data.
func (b *batch) prepareInputs(m *model) {
	for i, t := range b.ordered {
		if t == nil {
			continue // an optional input left out
		}
		ct := C.nimbus_tensor{rank: C.size_t(len(t.Shape)), elem: C.int32_t(onnxElemType(t.DataType))}
		if len(t.Shape) > 0 {
			b.pin.Pin(unsafe.SliceData(t.Shape))
			ct.shape = (*C.int64_t)(unsafe.Pointer(unsafe.SliceData(t.Shape)))
		}
		if t.DataType == tensor.Bytes {
			b.stringInput(&ct, t.Strings)
		} else {
			data := t.Data
			if len(data) == 0 {
				data = alignedBytes(8) // zero elements: ONNX Runtime reads nothing, but wants a pointer
			} else if uintptr(unsafe.Pointer(unsafe.SliceData(data)))%uintptr(t.DataType.Size()) != 0 {
				// E.g. a slice of a request body at an odd offset: kernels expect natural alignment.
				data = append(alignedBytes(len(data))[:0], data...)
			}
			b.pin.Pin(unsafe.SliceData(data))
			ct.data, ct.nbytes = unsafe.Pointer(unsafe.SliceData(data)), C.size_t(len(t.Data))
		}
		b.in = append(b.in, ct)
		b.inNames = append(b.inNames, m.inNames[i])
	}
}

// stringInput lays the elements out as one buffer and count+1 offsets, which
// nimbus_run copies into ONNX Runtime's string tensor (any bytes, NUL included).
func (b *batch) stringInput(ct *C.nimbus_tensor, strs [][]byte) {
	total := 0
	for _, s := range strs {
		total += len(s)
	}
	buf := make([]byte, 0, max(total, 1))
	offs := make([]C.size_t, 0, len(strs)+1)
	for _, s := range strs {
		offs = append(offs, C.size_t(len(buf)))
		buf = append(buf, s...)
	}
	offs = append(offs, C.size_t(len(buf)))
	b.pin.Pin(unsafe.SliceData(buf))
	b.pin.Pin(unsafe.SliceData(offs))
	ct.data, ct.nbytes = unsafe.Pointer(unsafe.SliceData(buf)), C.size_t(len(buf))
	ct.offs, ct.count = unsafe.SliceData(offs), C.size_t(len(strs))
}

// maxPreallocBytes bounds one preallocated output. Larger ones are left to ONNX
// Runtime.
const maxPreallocBytes = 1 << 30

// prepareOutputs describes the requested outputs to C. When prealloc is set,
// numeric outputs whose shape is known before the run (fixed, a scalar, or
// following from the inputs' through dim_params) are preallocated in Go
// memory, so that ONNX Runtime writes the results where the caller gets them:
// no ORT allocation and no copy. The rest, and every BYTES output, ONNX
// Runtime allocates.
//
// Preallocated outputs share one arena, allocated here and owned by the caller
// after Run.
func (b *batch) prepareOutputs(m *model, prealloc bool) error {
	b.releaseOutputs()
	b.resolveDims(m)
	type planned struct {
		shape []int64
		size  int // bytes; -1: ONNX Runtime allocates
	}
	var plan [8]planned
	plans := plan[:0]
	if len(b.want) > len(plan) {
		plans = make([]planned, 0, len(b.want))
	}
	arenaWords, shapeLen := 0, 0
	for _, si := range b.want {
		spec := m.sig.Outputs[m.sessOuts[si]]
		if !prealloc || spec.DataType == tensor.Bytes {
			plans = append(plans, planned{size: -1})
			continue
		}
		start := len(b.shapeBuf)
		var ok bool
		b.shapeBuf, ok = resolveShapeInto(b.shapeBuf, spec.Shape, m.info.outDimParams[m.sessOuts[si]], b.params)
		shape := b.shapeBuf[start:len(b.shapeBuf):len(b.shapeBuf)]
		if !ok {
			b.shapeBuf = b.shapeBuf[:start]
			plans = append(plans, planned{size: -1})
			continue
		}
		// An empty input can name a huge dim ([2^40,0] holds no data): an
		// output sized from it must not take the process down. ONNX Runtime
		// allocates it, and fails cleanly if it really is that large.
		n, err := tensor.NumElements(shape)
		size := int(n) * spec.DataType.Size()
		if err != nil || size > maxPreallocBytes {
			b.shapeBuf = b.shapeBuf[:start]
			plans = append(plans, planned{size: -1})
			continue
		}
		arenaWords += (max(size, 1) + 7) / 8 // ONNX Runtime wants a pointer even for no data
		shapeLen += len(shape)
		plans = append(plans, planned{shape: shape, size: size})
	}
	// One allocation for the data and the shapes of every preallocated output.
	var arena []uint64
	var shapes []int64
	if arenaWords > 0 {
		arena = make([]uint64, arenaWords+shapeLen)
		b.pin.Pin(unsafe.SliceData(arena))
		tail := arena[arenaWords:]
		shapes = unsafe.Slice((*int64)(unsafe.Pointer(unsafe.SliceData(tail))), len(tail))[:0]
	}
	b.pin.Pin(unsafe.SliceData(b.dims))
	off := 0
	for k, p := range plans {
		si := b.want[k]
		spec := m.sig.Outputs[m.sessOuts[si]]
		ct := C.nimbus_tensor{
			elem:     C.int32_t(onnxElemType(spec.DataType)),
			out_dims: (*C.int64_t)(unsafe.Pointer(&b.dims[k*maxInlineRank])), dims_cap: maxInlineRank,
		}
		var data []byte
		var shape []int64
		if p.size >= 0 {
			words := (max(p.size, 1) + 7) / 8
			mem := arena[off : off+words : off+words]
			off += words
			// The caller owns the shape: give it a slice of one shared allocation.
			start := len(shapes)
			shapes = append(shapes, p.shape...)
			shape = shapes[start:len(shapes):len(shapes)]
			buf := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(mem))), words*8)
			// Full slice expressions: appending to one output must not overwrite the next.
			data = buf[:p.size:p.size]
			ct.data, ct.nbytes = unsafe.Pointer(unsafe.SliceData(buf)), C.size_t(p.size)
			ct.rank = C.size_t(len(shape))
			if len(shape) > 0 {
				ct.shape = (*C.int64_t)(unsafe.Pointer(unsafe.SliceData(shape)))
			}
		}
		b.out = append(b.out, ct)
		b.outNames = append(b.outNames, m.outNames[si])
		b.outData = append(b.outData, data)
		b.outShape = append(b.outShape, shape)
	}
	return nil
}

// resolveDims fills b.params with the size of each dim_param of the given
// inputs (e.g. "batch") in this batch.
func (b *batch) resolveDims(m *model) {
	if !m.hasDimParams {
		return
	}
	if b.params == nil {
		b.params = make(map[string]int64, 4)
	}
	clear(b.params)
	for i, params := range m.info.inDimParams {
		t := b.ordered[i]
		if t == nil {
			continue
		}
		for j, p := range params {
			if p != "" && j < len(t.Shape) {
				b.params[p] = t.Shape[j]
			}
		}
	}
}

// resolveShapeInto appends the concrete shape of spec to dst. When it is not
// resolvable (an unknown rank, an anonymous or unknown dynamic dim) it
// returns false and dst possibly with a partial shape appended. A scalar
// (rank 0) resolves to no dims.
func resolveShapeInto(dst, spec []int64, params []string, dims map[string]int64) ([]int64, bool) {
	if spec == nil { // unknown rank
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

// outputTensor converts requested output k to t. Preallocated outputs are used
// as they are; outputs ONNX Runtime allocated are copied into Go memory once.
func (b *batch) outputTensor(t *tensor.Tensor, k int, spec tensor.TensorSpec) error {
	t.Name, t.DataType = spec.Name, spec.DataType
	if d := b.outData[k]; d != nil {
		t.Data, t.Shape = d, b.outShape[k]
		return nil
	}
	ct := &b.out[k]
	if ct.value == nil || ct.not_tensor != 0 {
		return fmt.Errorf("onnx: output %s: ONNX Runtime returned no tensor", spec.Name)
	}
	if got := int32(ct.out_elem); got != onnxElemType(spec.DataType) {
		return fmt.Errorf("onnx: output %s: ONNX Runtime returned %s, the model declares %s", spec.Name, elemName(got), spec.DataType)
	}
	rank := int(ct.out_rank)
	t.Shape = make([]int64, rank)
	if rank <= maxInlineRank {
		copy(t.Shape, b.dims[k*maxInlineRank:k*maxInlineRank+rank])
	} else if err := valueDims(ct, t.Shape); err != nil {
		return fmt.Errorf("onnx: output %s: %w", spec.Name, err)
	}
	count := int(ct.out_count)
	if spec.DataType == tensor.Bytes {
		return stringOutput(t, ct, count)
	}
	n := count * spec.DataType.Size()
	t.Data = alignedBytes(n)
	if n > 0 {
		copy(t.Data, unsafe.Slice((*byte)(ct.out_data), n))
	}
	return nil
}

// stringOutput copies a string output: one buffer, each element a slice of it.
func stringOutput(t *tensor.Tensor, ct *C.nimbus_tensor, count int) error {
	t.Strings = make([][]byte, count)
	if count == 0 {
		return nil
	}
	buf := make([]byte, int(ct.out_bytes))
	offs := make([]C.size_t, count)
	if err := valueStrings(ct, buf, offs); err != nil {
		return fmt.Errorf("onnx: output %s: %w", t.Name, err)
	}
	for i := range count {
		end := len(buf)
		if i+1 < count {
			end = int(offs[i+1])
		}
		start := int(offs[i])
		if start > end || end > len(buf) {
			return errs.New(errs.Internal, "onnx: output %s: ONNX Runtime gave inconsistent string offsets", t.Name)
		}
		t.Strings[i] = buf[start:end:end]
	}
	return nil
}

// alignedBytes returns n bytes aligned for any element type.
func alignedBytes(n int) []byte {
	words := make([]uint64, (n+7)/8)
	if len(words) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), n)
}
