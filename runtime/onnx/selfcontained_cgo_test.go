//go:build cgo

package onnx

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/runtime"
	o "github.com/nimbus-ai/nimbus/runtime/onnx/onnxtest"
	"github.com/nimbus-ai/nimbus/tensor"
)

// TestLoadRefusesExternalData: a model whose tensors name a file never reaches
// ONNX Runtime, which would resolve a relative location against the working
// directory and return the file's bytes as the model's output.
func TestLoadRefusesExternalData(t *testing.T) {
	secret := []byte("NIMBUS-SECRET-0123456789abcdef")
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(cwd, file) // "../../../tmp/.../secret"
	if err != nil || !strings.HasPrefix(rel, "..") {
		t.Fatalf("relative path %q: %v", rel, err)
	}
	n := int64(len(secret))
	ext := o.ExternalTensor("k", o.Uint8, []int64{n}, rel, 0, n)
	outY := o.ValueInfo("y", o.Uint8, n)
	models := map[string][]byte{
		"initializer output": o.ExfiltrationModel(rel, n),
		"Constant value": o.Model(o.Graph{
			Nodes:   [][]byte{o.Node("c", "Constant", nil, []string{"y"}, o.TensorAttr("value", ext))},
			Inputs:  [][]byte{o.ValueInfo("x", o.Float, -1, 1)},
			Outputs: [][]byte{outY},
		}.Bytes()),
		"If branch": o.Model(o.Graph{
			Nodes: [][]byte{o.Node("if", "If", []string{"cond"}, []string{"y"},
				o.GraphAttr("then_branch", o.Graph{Nodes: [][]byte{o.Node("c", "Constant", nil, []string{"t"}, o.TensorAttr("value", ext))},
					Outputs: [][]byte{o.ValueInfo("t", o.Uint8, n)}}.Bytes()),
				o.GraphAttr("else_branch", o.Graph{Nodes: [][]byte{o.Node("c2", "Constant", nil, []string{"e"}, o.TensorAttr("value", ext))},
					Outputs: [][]byte{o.ValueInfo("e", o.Uint8, n)}}.Bytes()))},
			Inputs:  [][]byte{o.ValueInfo("cond", o.Bool, 1)},
			Outputs: [][]byte{outY},
		}.Bytes()),
	}
	rt := newTestRuntime(t)
	for name, data := range models {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.onnx")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := rt.Load(context.Background(), path, runtime.Options{})
			if err == nil {
				defer m.Close()
				in := m.Signature().Inputs[0]
				x := &tensor.Tensor{Name: in.Name, DataType: in.DataType, Shape: []int64{1, 1}, Data: make([]byte, in.DataType.Size())}
				if in.DataType == tensor.Bool {
					x.Shape, x.Data = []int64{1}, []byte{1}
				}
				outs, rerr := m.Run(context.Background(), []*tensor.Tensor{x}, nil)
				if rerr == nil && bytes.Contains(outs[0].Data, secret[:8]) {
					t.Fatalf("the model read %s through ONNX Runtime: %q", rel, outs[0].Data)
				}
				t.Fatalf("a model with external data was loaded (run: %v)", rerr)
			}
			if errs.KindOf(err) != errs.InvalidArgument {
				t.Errorf("kind %v, want InvalidArgument: %v", errs.KindOf(err), err)
			}
			msg := errs.PublicMessage(err)
			if !strings.Contains(msg, "keeps its data in an external file ("+`"`+rel+`"`+")") || !strings.Contains(msg, selfContainedHint) {
				t.Errorf("message %q", msg)
			}
			if strings.Contains(err.Error(), "ONNX Runtime") {
				t.Errorf("the model reached ONNX Runtime: %v", err)
			}
		})
	}
}

// TestModelCannotChooseSessionOptions: with ORT_LOAD_CONFIG_FROM_MODEL=1 in the
// server's environment, ONNX Runtime would take session options from the
// model's "ort_config" metadata; enable_profiling writes a profile file into
// the working directory. Nimbus clears the variable before creating a session.
func TestModelCannotChooseSessionOptions(t *testing.T) {
	rt := newTestRuntime(t) // finds the library from the package directory
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(ortConfigFromModelEnv, "1")
	data := o.Model(o.Graph{
		Nodes:   [][]byte{o.Node("id", "Identity", []string{"x"}, []string{"y"})},
		Inputs:  [][]byte{o.ValueInfo("x", o.Float, -1, 1)},
		Outputs: [][]byte{o.ValueInfo("y", o.Float, -1, 1)},
	}.Bytes(), o.Metadata("ort_config", `{"session_options": {"enable_profiling": 1}}`))
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := rt.Load(context.Background(), path, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	x := &tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: []int64{1, 1}, Data: make([]byte, 4)}
	if _, err := m.Run(context.Background(), []*tensor.Tensor{x}, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, set := os.LookupEnv(ortConfigFromModelEnv); set {
		t.Errorf("%s is still set", ortConfigFromModelEnv)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("the model made ONNX Runtime write %s", e.Name())
	}
}
