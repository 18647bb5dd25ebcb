package onnx

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/nimbus-ai/nimbus/internal/errs"
	o "github.com/nimbus-ai/nimbus/runtime/onnx/onnxtest"
	"github.com/nimbus-ai/nimbus/tensor"
)

const modelsDir = "../../testdata/models"

func modelPath(name string) string { return filepath.Join(modelsDir, name) }

func spec(name string, dt tensor.DataType, shape ...int64) tensor.TensorSpec {
	return tensor.TensorSpec{Name: name, DataType: dt, Shape: shape, Kind: "tensor"}
}

func TestInspectModels(t *testing.T) {
	dtypeSpecs := func(prefix string) []tensor.TensorSpec {
		var out []tensor.TensorSpec
		for _, d := range dtypesModel {
			out = append(out, spec(prefix+d.suffix, d.dt, -1, 2))
		}
		return out
	}
	tests := []struct {
		file string
		want tensor.Signature
	}{
		{"mlp.onnx", tensor.Signature{
			Inputs:  []tensor.TensorSpec{spec("x", tensor.FP32, -1, 4)},
			Outputs: []tensor.TensorSpec{spec("y", tensor.FP32, -1, 3), spec("probs", tensor.FP32, -1, 3)},
		}},
		{"mlp_medium.onnx", tensor.Signature{
			Inputs:  []tensor.TensorSpec{spec("x", tensor.FP32, -1, 64)},
			Outputs: []tensor.TensorSpec{spec("y", tensor.FP32, -1, 10)},
		}},
		{"multi_io.onnx", tensor.Signature{
			Inputs: []tensor.TensorSpec{spec("a", tensor.FP32, -1, 3), spec("b", tensor.Int64, -1, 3),
				spec("mask", tensor.Bool, -1, 3)},
			Outputs: []tensor.TensorSpec{spec("sum", tensor.FP32, -1, 3), spec("masked", tensor.FP32, -1, 3),
				spec("count", tensor.Int64, -1)},
		}},
		{"tree.onnx", tensor.Signature{
			Inputs:  []tensor.TensorSpec{spec("input", tensor.FP32, -1, 4)},
			Outputs: []tensor.TensorSpec{spec("label", tensor.Int64, -1), spec("probabilities", tensor.FP32, -1, 3)},
		}},
		{"tree_zipmap.onnx", tensor.Signature{
			Inputs: []tensor.TensorSpec{spec("input", tensor.FP32, -1, 4)},
			Outputs: []tensor.TensorSpec{spec("label", tensor.Int64, -1),
				{Name: "output_probability", Kind: "seq(map(int64,tensor(float)))"}},
		}},
		{"dtypes.onnx", tensor.Signature{Inputs: dtypeSpecs("in_"), Outputs: dtypeSpecs("out_")}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := InspectFile(modelPath(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("signature:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// dtypesModel lists dtypes.onnx's inputs/outputs (in_<suffix> -> out_<suffix>).
var dtypesModel = []struct {
	suffix string
	dt     tensor.DataType
}{
	{"bool", tensor.Bool}, {"uint8", tensor.Uint8}, {"uint16", tensor.Uint16}, {"uint32", tensor.Uint32},
	{"uint64", tensor.Uint64}, {"int8", tensor.Int8}, {"int16", tensor.Int16}, {"int32", tensor.Int32},
	{"int64", tensor.Int64}, {"fp16", tensor.FP16}, {"fp32", tensor.FP32}, {"fp64", tensor.FP64},
	{"string", tensor.Bytes}, {"bf16", tensor.BF16},
}

// Hand-built protobuf for cases the generated models do not cover.
func msgField(num protowire.Number, payload []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), payload)
}

func varint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func valueInfo(name string, typ []byte) []byte {
	return cat(msgField(valueInfoName, []byte(name)), msgField(valueInfoType, typ))
}

func tensorType(elem uint64, dims ...[]byte) []byte {
	t := varint(tensorElemType, elem)
	if dims != nil {
		var shape []byte
		for _, d := range dims {
			shape = append(shape, msgField(shapeDim, d)...)
		}
		t = append(t, msgField(tensorShape, shape)...)
	}
	return msgField(typeTensor, t)
}

func TestInspectHandBuilt(t *testing.T) {
	model := func(graph ...[]byte) []byte {
		return cat(varint(modelIRVersion, 8), msgField(modelGraph, cat(graph...)))
	}
	out := msgField(graphOutput, valueInfo("y", tensorType(onnxFloat, varint(dimValue, 2))))
	tests := []struct {
		name string
		data []byte
		want tensor.Signature
	}{
		{
			name: "initializers listed as inputs are dropped; dims: param, value, anonymous",
			data: model(
				msgField(graphInitializer, msgField(tensorName, []byte("w"))),
				msgField(graphInput, valueInfo("w", tensorType(onnxFloat, varint(dimValue, 3)))),
				msgField(graphInput, valueInfo("x", tensorType(onnxBFloat16,
					msgField(dimParam, []byte("n")), varint(dimValue, 5), nil))),
				out),
			want: tensor.Signature{
				Inputs:  []tensor.TensorSpec{spec("x", tensor.BF16, -1, 5, -1)},
				Outputs: []tensor.TensorSpec{spec("y", tensor.FP32, 2)},
			},
		},
		{
			name: "unknown rank, unsupported element type, optional and map types",
			data: model(
				msgField(graphInput, valueInfo("r", tensorType(onnxDouble))),
				msgField(graphInput, valueInfo("c", tensorType(14, varint(dimValue, 1)))),
				msgField(graphInput, valueInfo("o", msgField(typeOptional, msgField(tensorElemType, tensorType(onnxInt32))))),
				msgField(graphInput, valueInfo("m", msgField(typeMap, cat(varint(mapKeyType, onnxString),
					msgField(mapValueType, tensorType(onnxDouble)))))),
				out),
			want: tensor.Signature{
				Inputs: []tensor.TensorSpec{
					{Name: "r", DataType: tensor.FP64, Kind: "tensor"},
					{Name: "c", Shape: []int64{1}, Kind: "tensor(complex64)"},
					{Name: "o", DataType: tensor.Int32, Kind: "tensor", Optional: true},
					{Name: "m", Kind: "map(string,tensor(double))"},
				},
				Outputs: []tensor.TensorSpec{spec("y", tensor.FP32, 2)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := parseModel(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(info.sig, tt.want) {
				t.Errorf("signature:\n got %+v\nwant %+v", info.sig, tt.want)
			}
		})
	}
}

func TestInspectInvalid(t *testing.T) {
	mlp, err := os.ReadFile(modelPath("mlp.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	deep := tensorType(onnxFloat)
	for range maxTypeDepth + 2 {
		deep = msgField(typeSequence, msgField(tensorElemType, deep))
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not an ONNX model: the file is empty"},
		{"text", []byte("hello, this is not a model\n"), "not an ONNX model"},
		{"random", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "not an ONNX model"},
		{"truncated", mlp[:len(mlp)/2], "not an ONNX model"},
		{"no graph", varint(modelIRVersion, 8), "not an ONNX model: the model has no graph"},
		{"no ir_version", msgField(modelGraph, nil), "not an ONNX model: no ir_version"},
		{"no outputs", cat(varint(modelIRVersion, 8), msgField(modelGraph, nil)), "not an ONNX model: the graph has no outputs"},
		{"graph wrong wire type", cat(varint(modelIRVersion, 8), varint(modelGraph, 1)), "graph has the wrong wire type"},
		{"untyped output", cat(varint(modelIRVersion, 8), msgField(modelGraph, msgField(graphOutput, msgField(valueInfoName, []byte("y"))))),
			"y has no type"},
		{"deep type", cat(varint(modelIRVersion, 8), msgField(modelGraph, msgField(graphOutput, valueInfo("y", deep)))),
			"type nesting too deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseModel(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if !errors.Is(err, errs.ErrInvalid) {
				t.Errorf("err = %v is not InvalidArgument", err)
			}
		})
	}
}

func TestInspectFileErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("\x00\x01garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := InspectFile(garbage); err == nil || !strings.Contains(err.Error(), "not an ONNX model") {
		t.Errorf("garbage: err = %v", err)
	}
	if _, err := InspectFile(filepath.Join(dir, "missing.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: err = %v, want ErrNotExist", err)
	}
	// A read failure is the server's, not the model's: unclassified, so its
	// text (paths, OS errors) never reaches a client.
	mlp, err := os.ReadFile(modelPath("mlp.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]io.ReaderAt{"short file": bytes.NewReader(mlp[:len(mlp)/2]), "failing disk": failingReader{}} {
		_, err := Inspector{}.Inspect(r, int64(len(mlp)))
		if err == nil || errs.KindOf(err) != errs.Internal || errs.PublicMessage(err) != "internal error" {
			t.Errorf("%s: err = %v (%v)", name, err, errs.KindOf(err))
		}
	}
}

type failingReader struct{}

var errDisk = errors.New("read /data/blobs/ab/abcd: input/output error")

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errDisk }

func FuzzInspect(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(modelsDir, "*.onnx"))
	hostileFiles, _ := filepath.Glob(filepath.Join(modelsDir, "hostile", "*.onnx"))
	for _, name := range append(files, hostileFiles...) {
		if data, err := os.ReadFile(name); err == nil && len(data) < 64<<10 {
			f.Add(data)
		}
	}
	f.Add([]byte{})
	f.Add(cat(varint(modelIRVersion, 8), msgField(modelGraph, msgField(graphOutput, valueInfo("y", tensorType(1))))))
	// Tensors with external data in every place the check walks.
	ext := o.ExternalTensor("w", o.Float, []int64{1}, "../w.bin", 0, 4)
	sub := o.Graph{Initializers: [][]byte{ext}, Outputs: [][]byte{outY}}.Bytes()
	for _, m := range [][]byte{
		hostile(nil, [][]byte{ext}, nil),
		hostile(nil, nil, [][]byte{o.Sparse(ext, idx, 4)}),
		hostile([][]byte{constant("c", o.TensorAttr("value", ext))}, nil, nil),
		hostile([][]byte{o.Node("n", "X", nil, nil, o.TensorsAttr("t", ext), o.SparseTensorsAttr("s", o.Sparse(rawW, ext)))}, nil, nil),
		hostile([][]byte{ifNode("if", sub), o.Node("s", "Scan", nil, nil, o.GraphsAttr("b", sub))}, nil, nil),
		hostile(nil, nil, nil, o.Function("f", "d", [][]byte{constant("c", o.TensorAttr("value", ext))}, o.TensorAttr("a", ext))),
		hostile(nil, nil, nil, o.TrainingInfo(sub)),
	} {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := parseModel(data)
		if err == nil && len(info.sig.Outputs) == 0 {
			t.Fatal("a model without outputs was accepted")
		}
		if err != nil && errs.KindOf(err) != errs.InvalidArgument {
			t.Fatalf("kind %v: %v", errs.KindOf(err), err)
		}
		if err == nil {
			for _, s := range info.sig.Inputs {
				if s.Supported() && !s.DataType.Valid() {
					t.Fatalf("supported input %q with invalid datatype", s.Name)
				}
			}
		}
		// Read from a file through a tiny window, the answer is the same.
		finfo, ferr := inspect(newFileSource(bytes.NewReader(data), int64(len(data)), 5), int64(len(data)))
		if (err == nil) != (ferr == nil) || err != nil && err.Error() != ferr.Error() {
			t.Fatalf("memory: %v\nfile: %v", err, ferr)
		}
		if err == nil && !reflect.DeepEqual(info, finfo) {
			t.Fatalf("memory %+v\nfile %+v", info, finfo)
		}
	})
}
