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
//
// Numeric inputs are wrapped without copying: ONNX Runtime reads the tensor's
// Data in place. That memory is pinned (cgo forbids C keeping unpinned Go
// pointers) until release, which runs after the session has finished.
type batch struct {
	in     []ort.Value
	out    []ort.Value
	outBuf [][]byte // data of outputs this package allocated (see preallocOutputs)
	pin    runtime.Pinner
}

func newBatch(nIn, nOut int) *batch {
	return &batch{in: make([]ort.Value, nIn), out: make([]ort.Value, nOut), outBuf: make([][]byte, nOut)}
}

func (b *batch) release() {
	for _, vs := range [][]ort.Value{b.in, b.out} {
		for i, v := range vs {
			// The binding can leave a typed nil in an output when converting it fails.
			if v != nil && !reflect.ValueOf(v).IsNil() {
				_ = v.Destroy()
			}
			vs[i] = nil
		}
	}
	b.pin.Unpin()
}

// inputValue wraps t (already validated against the signature) as an ORT value.
func (b *batch) inputValue(t *tensor.Tensor) (ort.Value, error) {
	if len(t.Shape) == 0 {
		return nil, errs.New(errs.Unimplemented,
			"input %s: scalar (rank 0) tensors are not supported by the ONNX runtime", t.Name).WithField(t.Name)
	}
	shape := ort.NewShape(t.Shape...)
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

// preallocOutputs allocates FP16 and BF16 outputs whose shape follows from the
// inputs. onnxruntime_go v1.27.0 cannot convert such outputs when ONNX Runtime
// allocates them (it copies one byte per element), so for these types ONNX
// Runtime must write into memory given to it. Other outputs are left to ONNX
// Runtime, whose shape the model need not declare.
func (b *batch) preallocOutputs(m *model, inputs []*tensor.Tensor) error {
	var dims map[string]int64
	for si, oi := range m.sessOuts {
		spec := m.sig.Outputs[oi]
		if spec.DataType != tensor.FP16 && spec.DataType != tensor.BF16 {
			continue
		}
		if dims == nil {
			dims = symbolicDims(m.info, inputs)
		}
		shape, ok := resolveShape(spec.Shape, m.info.outDimParams[oi], dims)
		if !ok {
			return errs.New(errs.Unimplemented,
				"output %s: %s outputs need a shape the runtime can work out from the inputs' (got %s)",
				spec.Name, spec.DataType, tensor.ShapeString(spec.Shape)).WithField(spec.Name)
		}
		n, err := tensor.NumElements(shape)
		if err != nil {
			return fmt.Errorf("onnx: output %s: %w", spec.Name, err)
		}
		size := int(n) * spec.DataType.Size()
		buf := alignedBytes(max(size, 8))
		b.pin.Pin(unsafe.SliceData(buf))
		v, err := ort.NewCustomDataTensor(ort.NewShape(shape...), buf, ort.TensorElementDataType(onnxElemType(spec.DataType)))
		if err != nil {
			return fmt.Errorf("onnx: output %s: %w", spec.Name, err)
		}
		b.out[si], b.outBuf[si] = v, buf[:size]
	}
	return nil
}

// symbolicDims maps each dim_param of the inputs (e.g. "batch") to its size in this batch.
func symbolicDims(info *modelInfo, inputs []*tensor.Tensor) map[string]int64 {
	dims := map[string]int64{}
	for i, params := range info.inDimParams {
		for j, p := range params {
			if p != "" && j < len(inputs[i].Shape) {
				dims[p] = inputs[i].Shape[j]
			}
		}
	}
	return dims
}

func resolveShape(spec []int64, params []string, dims map[string]int64) ([]int64, bool) {
	if len(spec) == 0 { // unknown rank, or a scalar (which the binding cannot create)
		return nil, false
	}
	shape := make([]int64, len(spec))
	for i, d := range spec {
		if d >= 0 {
			shape[i] = d
			continue
		}
		v, ok := dims[params[i]]
		if params[i] == "" || !ok {
			return nil, false
		}
		shape[i] = v
	}
	return shape, true
}

// outputTensor converts session output si to a tensor. Numeric data that the
// binding copied into Go memory is used as is (no second copy).
func (b *batch) outputTensor(si int, spec tensor.TensorSpec) (*tensor.Tensor, error) {
	v := b.out[si]
	if v == nil {
		return nil, fmt.Errorf("onnx: output %s: no value", spec.Name)
	}
	t := &tensor.Tensor{Name: spec.Name, Shape: []int64(v.GetShape())}
	switch v := v.(type) {
	case *ort.Tensor[float32]:
		t.DataType, t.Data = tensor.FP32, tensorBytes(v)
	case *ort.Tensor[float64]:
		t.DataType, t.Data = tensor.FP64, tensorBytes(v)
	case *ort.Tensor[int64]:
		t.DataType, t.Data = tensor.Int64, tensorBytes(v)
	case *ort.Tensor[int32]:
		t.DataType, t.Data = tensor.Int32, tensorBytes(v)
	case *ort.Tensor[int16]:
		t.DataType, t.Data = tensor.Int16, tensorBytes(v)
	case *ort.Tensor[int8]:
		t.DataType, t.Data = tensor.Int8, tensorBytes(v)
	case *ort.Tensor[uint64]:
		t.DataType, t.Data = tensor.Uint64, tensorBytes(v)
	case *ort.Tensor[uint32]:
		t.DataType, t.Data = tensor.Uint32, tensorBytes(v)
	case *ort.Tensor[uint16]:
		t.DataType, t.Data = tensor.Uint16, tensorBytes(v)
	case *ort.Tensor[uint8]:
		t.DataType, t.Data = tensor.Uint8, tensorBytes(v)
	case *ort.Tensor[bool]:
		t.DataType, t.Data = tensor.Bool, tensorBytes(v)
	case *ort.StringTensor:
		strs, err := v.GetContents()
		if err != nil {
			return nil, fmt.Errorf("onnx: output %s: %w", spec.Name, err)
		}
		t.DataType, t.Strings = tensor.Bytes, make([][]byte, len(strs))
		for i, s := range strs {
			t.Strings[i] = []byte(s)
		}
	case *ort.CustomDataTensor:
		if b.outBuf[si] == nil {
			return nil, fmt.Errorf("onnx: output %s: unexpected element type %d", spec.Name, v.DataType())
		}
		t.DataType, t.Data = spec.DataType, b.outBuf[si]
	default:
		return nil, fmt.Errorf("onnx: output %s: unsupported value %T", spec.Name, v)
	}
	return t, nil
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
