package onnx

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	o "github.com/nimbus-ai/nimbus/runtime/onnx/onnxtest"
)

// Hostile models: a graph whose output is fine, plus a tensor that keeps its
// data in a file, hidden in each place ONNX allows a tensor.
var (
	passwd   = "../../etc/passwd"
	extW     = o.ExternalTensor("w", o.Float, []int64{4}, passwd, 0, 16)
	rawW     = o.Tensor("w", o.Float, []int64{1}, make([]byte, 4))
	idx      = o.Tensor("", o.Int64, []int64{1}, make([]byte, 8))
	extIdx   = o.ExternalTensor("", o.Int64, []int64{1}, "idx.bin", 0, 8)
	outY     = o.ValueInfo("y", o.Float, -1, 1)
	inX      = o.ValueInfo("x", o.Float, -1, 1)
	identity = o.Node("id", "Identity", []string{"x"}, []string{"y"})
)

// hostile is a valid model computing y = x, with extra nodes, initializers and
// model-level fields.
func hostile(nodes, inits, sparse [][]byte, extra ...[]byte) []byte {
	return o.Model(o.Graph{
		Name:               "g",
		Nodes:              append([][]byte{identity}, nodes...),
		Initializers:       inits,
		SparseInitializers: sparse,
		Inputs:             [][]byte{inX},
		Outputs:            [][]byte{outY},
	}.Bytes(), extra...)
}

// subgraph is a branch or body holding the given nodes and initializers.
func subgraph(nodes [][]byte, inits ...[]byte) []byte {
	return o.Graph{Name: "sub", Nodes: nodes, Initializers: inits, Outputs: [][]byte{o.ValueInfo("z", o.Float, 1)}}.Bytes()
}

func constant(name string, attr []byte) []byte {
	return o.Node(name, "Constant", nil, []string{name + "_out"}, attr)
}

func ifNode(name string, then []byte) []byte {
	return o.Node(name, "If", []string{"cond"}, []string{name + "_out"},
		o.GraphAttr("then_branch", then), o.GraphAttr("else_branch", subgraph(nil)))
}

const hint = "; " + selfContainedHint

func TestExternalDataIsRefusedWhereverItHides(t *testing.T) {
	deep := subgraph([][]byte{constant("c", o.TensorAttr("value", extW))})
	for range maxGraphDepth - 1 {
		deep = subgraph([][]byte{ifNode("if", deep)})
	}
	tooDeep := subgraph(nil)
	for range maxGraphDepth + 1 {
		tooDeep = subgraph([][]byte{ifNode("if", tooDeep)})
	}
	// The graph field given twice: protobuf merges the two, so ONNX Runtime
	// sees the first one's initializer too.
	split := o.Cat(o.Model(o.Graph{Initializers: [][]byte{extW}}.Bytes()),
		o.Bytes(modelGraph, o.Graph{Nodes: [][]byte{identity}, Inputs: [][]byte{inX}, Outputs: [][]byte{outY}}.Bytes()))

	tests := []struct {
		name  string
		model []byte
		want  string
	}{
		{"initializer", hostile(nil, [][]byte{extW}, nil),
			`initializer "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"initializer marked EXTERNAL without entries", hostile(nil, [][]byte{o.ExternalOnlyLocation("w", []int64{4})}, nil),
			`initializer "w" is marked as keeping its data in an external file` + hint},
		{"initializer with entries but not marked EXTERNAL", hostile(nil, [][]byte{o.ExternalOnlyEntries("w", []int64{4}, "w.bin")}, nil),
			`initializer "w" keeps its data in an external file ("w.bin")` + hint},
		{"ONNX Runtime's memory address location", hostile(nil, [][]byte{o.ExternalTensor("w", o.Float, []int64{4}, "*/_ORT_MEM_ADDR_/*", 4096, 16)}, nil),
			`initializer "w" keeps its data in an external file ("*/_ORT_MEM_ADDR_/*")` + hint},
		{"sparse initializer values", hostile(nil, nil, [][]byte{o.Sparse(o.ExternalTensor("s", o.Float, []int64{1}, "s.bin", 0, 4), idx, 4)}),
			`sparse initializer "s" (values) keeps its data in an external file ("s.bin")` + hint},
		{"sparse initializer indices", hostile(nil, nil, [][]byte{o.Sparse(o.Tensor("s", o.Float, []int64{1}, make([]byte, 4)), extIdx, 4)}),
			`sparse initializer "s" (indices) keeps its data in an external file ("idx.bin")` + hint},
		{"Constant value", hostile([][]byte{constant("c", o.TensorAttr("value", extW))}, nil, nil),
			`node "c" (Constant), attribute "value": tensor "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"Constant sparse_value", hostile([][]byte{constant("c", o.SparseTensorAttr("sparse_value", o.Sparse(rawW, extIdx, 4)))}, nil, nil),
			`node "c" (Constant), attribute "sparse_value": sparse tensor "w" (indices) keeps its data in an external file ("idx.bin")` + hint},
		{"TENSORS attribute of any node", hostile([][]byte{o.Node("", "Custom", []string{"x"}, []string{"q"}, o.TensorsAttr("tables", rawW, extW))}, nil, nil),
			`unnamed node (Custom), attribute "tables": tensor "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"SPARSE_TENSORS attribute", hostile([][]byte{o.Node("n", "Custom", nil, []string{"q"}, o.SparseTensorsAttr("s", o.Sparse(o.ExternalTensor("v", o.Float, []int64{1}, "v.bin", 0, 4), idx, 4)))}, nil, nil),
			`node "n" (Custom), attribute "s": sparse tensor "v" (values) keeps its data in an external file ("v.bin")` + hint},
		{"If branch initializer", hostile([][]byte{ifNode("if1", subgraph(nil, extW))}, nil, nil),
			`node "if1" (If), attribute "then_branch": initializer "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"Loop body Constant", hostile([][]byte{o.Node("loop", "Loop", []string{"n", "c"}, []string{"o"},
			o.GraphAttr("body", subgraph([][]byte{constant("k", o.TensorAttr("value", extW))})))}, nil, nil),
			`node "loop" (Loop), attribute "body", node "k" (Constant), attribute "value": tensor "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"GRAPHS attribute", hostile([][]byte{o.Node("scan", "Scan", []string{"s"}, []string{"o"},
			o.GraphsAttr("bodies", subgraph(nil), subgraph(nil, extW)))}, nil, nil),
			`node "scan" (Scan), attribute "bodies", graph 1: initializer "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"32 levels of subgraphs (the middle of the path elided)", hostile([][]byte{ifNode("top", deep)}, nil, nil),
			`node "top" (If), attribute "then_branch", ` + strings.Repeat(`node "if" (If), attribute "then_branch", `, 2) + `(54 more), ` +
				strings.Repeat(`node "if" (If), attribute "then_branch", `, 2) +
				`node "c" (Constant), attribute "value": tensor "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"subgraphs nested too deep", hostile([][]byte{ifNode("top", tooDeep)}, nil, nil),
			`node "top" (If), attribute "then_branch", ` + strings.Repeat(`node "if" (If), attribute "then_branch", `, 2) + `(53 more), ` +
				strings.Repeat(`attribute "then_branch", node "if" (If), `, 2) +
				`attribute "then_branch", node "if" (If): attribute "then_branch" nests subgraphs more than 32 levels deep`},
		{"function node", hostile(nil, nil, nil, o.Function("f", "local", [][]byte{constant("c", o.TensorAttr("value", extW))})),
			`function "f" (domain "local"), node "c" (Constant), attribute "value": tensor "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"function attribute default", hostile(nil, nil, nil, o.Function("f", "local", [][]byte{identity}, o.TensorAttr("w", extW))),
			`function "f" (domain "local"), default of attribute "w": tensor "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"training_info graph", hostile(nil, nil, nil, o.TrainingInfo(subgraph(nil, extW))),
			`training_info 0 initialization graph: initializer "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"graph field given twice", split,
			`initializer "w" keeps its data in an external file ("../../etc/passwd")` + hint},
		{"EPContext node", hostile([][]byte{o.WithDomain(o.Node("ctx", "EPContext", []string{"x"}, []string{"q"},
			o.Cat(o.Str(1, "ep_cache_context"), o.Str(4, "ctx.bin"))), "com.microsoft")}, nil, nil),
			`node "ctx" (EPContext) is an EPContext node`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, via := range []string{"memory", "file"} {
				var err error
				if via == "memory" {
					_, err = parseModel(tt.model)
				} else {
					_, err = Inspector{}.Inspect(bytes.NewReader(tt.model), int64(len(tt.model)))
				}
				if err == nil {
					t.Fatalf("%s: accepted", via)
				}
				if errs.KindOf(err) != errs.InvalidArgument {
					t.Errorf("%s: kind %v, want InvalidArgument", via, errs.KindOf(err))
				}
				if msg := errs.PublicMessage(err); !strings.HasPrefix(msg, tt.want) {
					t.Errorf("%s: message\n got %s\nwant %s", via, msg, tt.want)
				}
			}
		})
	}
}

// TestSelfContainedModelsPass: the same hiding places holding their data
// inline are fine, and the signature is the top graph's.
func TestSelfContainedModelsPass(t *testing.T) {
	m := hostile([][]byte{
		constant("c", o.TensorAttr("value", rawW)),
		constant("s", o.SparseTensorAttr("sparse_value", o.Sparse(rawW, idx, 4))),
		ifNode("if1", subgraph([][]byte{constant("k", o.TensorAttr("value", rawW))}, rawW)),
		o.Node("scan", "Scan", nil, []string{"o"}, o.GraphsAttr("bodies", subgraph(nil, rawW))),
	}, [][]byte{rawW}, [][]byte{o.Sparse(o.Tensor("s", o.Float, []int64{1}, make([]byte, 4)), idx, 4)},
		o.Function("f", "local", [][]byte{identity}, o.TensorAttr("w", rawW)),
		o.TrainingInfo(subgraph(nil, rawW)),
		o.Metadata("ort_config", `{"session_options": {"enable_profiling": 1}}`))
	info, err := parseModel(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.sig.Inputs) != 1 || info.sig.Inputs[0].Name != "x" || len(info.sig.Outputs) != 1 || info.sig.Outputs[0].Name != "y" {
		t.Errorf("signature %+v", info.sig)
	}
}

// TestExternalDataModelsFromONNX are written by the onnx package itself
// (testdata/models/gen_models.py, onnx.save_model with save_as_external_data),
// so the field numbers are checked against a real exporter, not only against
// onnxtest.
func TestExternalDataModelsFromONNX(t *testing.T) {
	tests := []struct{ file, want string }{
		{"external_initializer.onnx", `initializer "w" keeps its data in an external file ("external_initializer.bin")`},
		{"external_constant.onnx", `node "c" (Constant), attribute "value": tensor "k" keeps its data in an external file ("external_constant.bin")`},
		{"external_subgraph.onnx", `node "if" (If), attribute "then_branch", node "k" (Constant), attribute "value": tensor "k" keeps its data in an external file ("external_subgraph.bin")`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := InspectFile(filepath.Join(modelsDir, "hostile", tt.file))
			if errs.KindOf(err) != errs.InvalidArgument || errs.PublicMessage(err) != tt.want+hint {
				t.Fatalf("err = %v\nwant %s", err, tt.want+hint)
			}
		})
	}
}

// TestFileAndMemoryAgree: the windowed file reader gives the same answers as
// the in-memory one, with a window so small that every field needs a refill.
func TestFileAndMemoryAgree(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(modelsDir, "*.onnx"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := parseModel(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := inspect(newFileSource(bytes.NewReader(data), int64(len(data)), 3), int64(len(data)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: file %+v, memory %+v", f, got.sig, want.sig)
		}
	}
}
