package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/tensor"
)

func (a *app) predictCommand() *cobra.Command {
	var data string
	var inputs []string
	cmd := &cobra.Command{
		Use:   "predict MODEL[@VERSION|@ALIAS]",
		Short: "Run an inference with JSON inputs",
		Long: `Run an inference through the Open Inference Protocol. Inputs are given as
nested JSON arrays by input name; their datatypes come from the model's
metadata and their shapes from the nesting (a single row gets a batch
dimension when the model expects one). Without @VERSION the champion alias is
used, else the latest version. Shape and datatype mismatches are reported by
the server.`,
		Example: `  nimbus predict churn --data '{"x": [[0.3, 12, 1, 0]]}'
  nimbus predict churn@2 --input x=@rows.json
  nimbus predict fraud@challenger -n payments --input amount='[912.4]' --input merchant='["m1"]'
  nimbus predict churn --data '{"x": [[0.3, 12, 1, 0]]}' -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			model, ref := splitRef(argv[0])
			values, err := parseInputs(data, inputs)
			if err != nil {
				return err
			}
			c := a.client()
			md, err := c.ModelMetadata(cmd.Context(), a.namespace, model, ref)
			if err != nil {
				return fmt.Errorf("model metadata: %w", err)
			}
			req, err := buildInferRequest(md, values)
			if err != nil {
				return err
			}
			resp, err := c.Infer(cmd.Context(), a.namespace, model, ref, req)
			if err != nil {
				return fmt.Errorf("predict: %w", err)
			}
			if a.output == "json" {
				var buf bytes.Buffer
				if err := json.Indent(&buf, resp.Raw, "", "  "); err != nil {
					return fmt.Errorf("predict: %w", err)
				}
				buf.WriteByte('\n')
				_, err := a.stdout.Write(buf.Bytes())
				return err
			}
			return a.print(json.RawMessage(resp.Raw), func(t *table) {
				t.row("NAME", "DATATYPE", "SHAPE", "DATA")
				for _, o := range resp.Outputs {
					t.row(o.Name, o.Datatype, tensor.ShapeString(o.Shape), compactJSON(o.Data))
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&data, "data", "d", "", `inputs as a JSON object: {"NAME": nested array, ...}`)
	f.StringArrayVarP(&inputs, "input", "i", nil, "one input as NAME=JSON or NAME=@file.json (repeatable)")
	return cmd
}

func compactJSON(b json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

// parseInputs collects input values from --data and --input, in name order.
func parseInputs(data string, inputs []string) (map[string]json.RawMessage, error) {
	if data == "" && len(inputs) == 0 {
		return nil, usageErrorf("give inputs with --data or --input")
	}
	values := map[string]json.RawMessage{}
	if data != "" {
		if err := json.Unmarshal([]byte(data), &values); err != nil {
			return nil, usageErrorf("--data must be a JSON object of input name to array: %v", err)
		}
	}
	for _, in := range inputs {
		name, val, ok := strings.Cut(in, "=")
		if !ok || name == "" {
			return nil, usageErrorf("--input %q: want NAME=JSON or NAME=@file.json", in)
		}
		if file, isFile := strings.CutPrefix(val, "@"); isFile {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("--input %s: %w", name, err)
			}
			val = string(b)
		}
		if !json.Valid([]byte(val)) {
			return nil, usageErrorf("--input %s: value is not valid JSON", name)
		}
		if _, dup := values[name]; dup {
			return nil, usageErrorf("input %q is given twice", name)
		}
		values[name] = json.RawMessage(val)
	}
	return values, nil
}

// buildInferRequest types each value with the model's metadata, infers its
// shape from the nesting and flattens it row-major.
func buildInferRequest(md client.ModelMetadata, values map[string]json.RawMessage) (*client.InferRequest, error) {
	req := &client.InferRequest{}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	// Metadata order first, so requests read like the model's signature.
	slices.SortFunc(names, func(x, y string) int { return inputIndex(md, x) - inputIndex(md, y) })
	for _, name := range names {
		spec, ok := md.Input(name)
		if !ok {
			known := make([]string, len(md.Inputs))
			for i, in := range md.Inputs {
				known[i] = in.Name
			}
			return nil, fmt.Errorf("model %s has no input %q (inputs: %s)", md.Name, name, strings.Join(known, ", "))
		}
		dec := json.NewDecoder(bytes.NewReader(values[name]))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("input %s: %w", name, err)
		}
		shape, flat, err := shapeAndFlatten(v)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", name, err)
		}
		if len(spec.Shape) == len(shape)+1 && spec.Shape[0] == -1 {
			shape = append([]int64{1}, shape...)
		}
		b, err := json.Marshal(flat)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", name, err)
		}
		req.Inputs = append(req.Inputs, client.InferTensor{Name: name, Datatype: spec.Datatype, Shape: shape, Data: b})
	}
	return req, nil
}

func inputIndex(md client.ModelMetadata, name string) int {
	for i, in := range md.Inputs {
		if in.Name == name {
			return i
		}
	}
	return len(md.Inputs)
}

// shapeAndFlatten returns the shape of a rectangular nested array and its
// elements row-major. A scalar has shape [].
func shapeAndFlatten(v any) ([]int64, []any, error) {
	arr, ok := v.([]any)
	if !ok {
		return []int64{}, []any{v}, nil
	}
	if len(arr) == 0 {
		return []int64{0}, []any{}, nil
	}
	var inner []int64
	var flat []any
	for i, e := range arr {
		s, f, err := shapeAndFlatten(e)
		if err != nil {
			return nil, nil, err
		}
		if i == 0 {
			inner = s
		} else if !slices.Equal(s, inner) {
			return nil, nil, fmt.Errorf("ragged array: element %d has shape %s, element 0 has %s",
				i, tensor.ShapeString(s), tensor.ShapeString(inner))
		}
		flat = append(flat, f...)
	}
	return append([]int64{int64(len(arr))}, inner...), flat, nil
}
