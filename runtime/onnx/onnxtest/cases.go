package onnxtest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nimbus-ai/nimbus/tensor"
)

// Case is one input batch of testdata/models/cases.json with the outputs
// numpy computed for it and, where onnxruntime-node could run it, that
// runtime's answers (testdata/models/node_answers.json; nil otherwise).
type Case struct {
	Inputs  []*tensor.Tensor
	Outputs []*tensor.Tensor // in the order cases.json lists them
	Node    []*tensor.Tensor // same names and order as Outputs; nil without an answer
}

// Output returns the expected output called name.
func (c Case) Output(name string) *tensor.Tensor {
	for _, o := range c.Outputs {
		if o.Name == name {
			return o
		}
	}
	return nil
}

// LoadCases reads cases.json and node_answers.json from dir: model name ->
// its cases.
func LoadCases(dir string) (map[string][]Case, error) {
	var cases map[string][]struct {
		Inputs  orderedTensors `json:"inputs"`
		Outputs orderedTensors `json:"outputs"`
	}
	if err := readJSON(filepath.Join(dir, "cases.json"), &cases); err != nil {
		return nil, err
	}
	var answers map[string][]*struct {
		Outputs orderedTensors `json:"outputs"`
	}
	if err := readJSON(filepath.Join(dir, "node_answers.json"), &answers); err != nil {
		return nil, err
	}
	out := make(map[string][]Case, len(cases))
	for model, list := range cases {
		if len(answers[model]) != len(list) {
			return nil, fmt.Errorf("node_answers.json has %d answers for %s, cases.json %d cases: run make models", len(answers[model]), model, len(list))
		}
		for i, c := range list {
			k := Case{Inputs: c.Inputs, Outputs: c.Outputs}
			if a := answers[model][i]; a != nil {
				for _, o := range c.Outputs {
					n := find(a.Outputs, o.Name)
					if n == nil {
						return nil, fmt.Errorf("node_answers.json: %s case %d has no output %s", model, i, o.Name)
					}
					k.Node = append(k.Node, n)
				}
			}
			out[model] = append(out[model], k)
		}
	}
	return out, nil
}

func find(ts []*tensor.Tensor, name string) *tensor.Tensor {
	for _, t := range ts {
		if t.Name == name {
			return t
		}
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// orderedTensors decodes a JSON object of name -> tensor keeping the order.
type orderedTensors []*tensor.Tensor

func (o *orderedTensors) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if _, err := d.Token(); err != nil { // {
		return err
	}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		var raw struct {
			Datatype string            `json:"datatype"`
			Shape    []int64           `json:"shape"`
			Data     []json.RawMessage `json:"data"`
		}
		if err := d.Decode(&raw); err != nil {
			return err
		}
		t, err := caseTensor(tok.(string), raw.Datatype, raw.Shape, raw.Data)
		if err != nil {
			return err
		}
		*o = append(*o, t)
	}
	return nil
}

// caseTensor builds a tensor from cases.json's form: FP16 and BF16 as bit
// patterns, BYTES as strings, the rest as JSON numbers or booleans.
func caseTensor(name, datatype string, shape []int64, data []json.RawMessage) (*tensor.Tensor, error) {
	dt, ok := tensor.ParseDataType(datatype)
	if !ok {
		return nil, fmt.Errorf("%s: datatype %q", name, datatype)
	}
	if shape == nil {
		shape = []int64{}
	}
	if dt == tensor.FP16 || dt == tensor.BF16 {
		t := &tensor.Tensor{Name: name, DataType: dt, Shape: shape, Data: []byte{}}
		for _, d := range data {
			bits, err := strconv.ParseUint(string(d), 10, 16)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			t.Data = binary.LittleEndian.AppendUint16(t.Data, uint16(bits))
		}
		return t, nil
	}
	values := make([]string, len(data))
	for i, d := range data {
		if dt == tensor.Bytes {
			if err := json.Unmarshal(d, &values[i]); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			continue
		}
		values[i] = string(d)
	}
	return tensor.FromText(name, dt, shape, values)
}

// Compare checks got against want: FP32 and FP64 within 1e-5 (relative for
// values above 1), everything else bit for bit.
func Compare(got, want *tensor.Tensor) error {
	return compare(got, want, false)
}

// CompareNode checks got against onnxruntime-node's answer, as Compare does,
// except that onnxruntime-node hands strings to ONNX Runtime as C strings: its
// elements stop at the first NUL byte, which Nimbus keeps.
func CompareNode(got, node *tensor.Tensor) error {
	return compare(got, node, true)
}

func compare(got, want *tensor.Tensor, cutAtNUL bool) error {
	if got.Name != want.Name || got.DataType != want.DataType || tensor.ShapeString(got.Shape) != tensor.ShapeString(want.Shape) {
		return fmt.Errorf("got %s %s %s, want %s %s %s", got.Name, got.DataType, tensor.ShapeString(got.Shape),
			want.Name, want.DataType, tensor.ShapeString(want.Shape))
	}
	switch got.DataType {
	case tensor.FP32, tensor.FP64:
		g, w := floats(got), floats(want)
		if len(g) != len(w) {
			return fmt.Errorf("%s: %d elements, want %d", got.Name, len(g), len(w))
		}
		for i := range w {
			if math.IsNaN(g[i]) || math.IsNaN(w[i]) {
				if math.IsNaN(g[i]) != math.IsNaN(w[i]) {
					return fmt.Errorf("%s[%d] = %v, want %v", got.Name, i, g[i], w[i])
				}
				continue
			}
			if d := math.Abs(g[i] - w[i]); d > 1e-5*max(1, math.Abs(w[i])) || ((math.IsInf(g[i], 0) || math.IsInf(w[i], 0)) && g[i] != w[i]) {
				return fmt.Errorf("%s[%d] = %v, want %v", got.Name, i, g[i], w[i])
			}
		}
		return nil
	case tensor.Bytes:
		if len(got.Strings) != len(want.Strings) {
			return fmt.Errorf("%s: %d strings, want %d", got.Name, len(got.Strings), len(want.Strings))
		}
		for i, s := range got.Strings {
			if cutAtNUL {
				if j := bytes.IndexByte(s, 0); j >= 0 {
					s = s[:j]
				}
			}
			if !bytes.Equal(s, want.Strings[i]) {
				return fmt.Errorf("%s[%d] = %q, want %q", got.Name, i, s, want.Strings[i])
			}
		}
		return nil
	}
	if !bytes.Equal(got.Data, want.Data) {
		return fmt.Errorf("%s = %v, want %v", got.Name, got.Data, want.Data)
	}
	return nil
}

func floats(t *tensor.Tensor) []float64 {
	if t.DataType == tensor.FP64 {
		out := make([]float64, len(t.Data)/8)
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
		return out
	}
	out := make([]float64, len(t.Data)/4)
	for i := range out {
		out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:])))
	}
	return out
}
