package oip

import (
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// HeaderContentLength is the binary tensor data extension's header: the length of
// the JSON part of a body whose remainder is binary tensor data.
const HeaderContentLength = "Inference-Header-Content-Length"

// splitBody separates the JSON part from the binary part. headerLen 0 means the
// header was absent: the whole body is JSON.
func splitBody(body []byte, headerLen int) (js, bin []byte, hasBin bool, err error) {
	switch {
	case headerLen < 0:
		return nil, nil, false, invalid("%s must not be negative, got %d", HeaderContentLength, headerLen)
	case headerLen > len(body):
		return nil, nil, false, invalid("%s %d exceeds the body size %d", HeaderContentLength, headerLen, len(body))
	case headerLen == 0:
		return body, nil, false, nil
	}
	return body[:headerLen], body[headerLen:], true, nil
}

// DecodeInferRequest decodes an OIP inference request body. headerLen is the value
// of the Inference-Header-Content-Length header, or 0 when it is absent. Namespace,
// Model and Version are left for the caller (they come from the URL). The
// returned tensors may alias body. Errors are errs.InvalidArgument with a message
// safe to return to the client, or errs.TooLarge past the MaxDecodeFactor bound.
func DecodeInferRequest(body []byte, headerLen int) (*serving.InferRequest, error) {
	return DecodeRequest(body, headerLen, DecodeOptions{})
}

// DecodeRequest is DecodeInferRequest with the model's inputs checked as the
// tensors are read and every allocation charged to opts.Reserve first.
func DecodeRequest(body []byte, headerLen int, opts DecodeOptions) (*serving.InferRequest, error) {
	js, bin, hasBin, err := splitBody(body, headerLen)
	if err != nil {
		return nil, err
	}
	s := &scanner{buf: js, state: newDecodeState(len(body), opts)}
	s.d = &s.state
	req := &serving.InferRequest{}
	var inputs []decodedTensor
	hasInputs := false
	err = s.objectFields(func(key []byte) error {
		switch string(key) {
		case "id":
			id, err := readID(s)
			req.ID = id
			return err
		case "parameters":
			p, err := s.readParams()
			req.Parameters = p
			return err
		case "inputs":
			if null, err := s.isNull(); null || err != nil {
				return err
			}
			hasInputs = true
			inputs = inputs[:0]
			return s.arrayElems(func(i int) error {
				dt, err := decodeTensor(s, "input", i)
				inputs = append(inputs, dt)
				return err
			})
		case "outputs":
			if null, err := s.isNull(); null || err != nil {
				return err
			}
			req.Outputs = req.Outputs[:0]
			return s.arrayElems(func(i int) error {
				if err := s.d.chargeItem(outputCost, "outputs"); err != nil {
					return err
				}
				o, err := readOutputRequest(s, i)
				req.Outputs = append(req.Outputs, o)
				return err
			})
		default:
			return s.skipValue(0)
		}
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, err
	}
	if !hasInputs {
		return nil, invalid("inputs is required")
	}
	if err := checkNames(inputs, "input"); err != nil {
		return nil, err
	}
	if req.Inputs, err = finishTensors(s.d, inputs, "input", bin, hasBin); err != nil {
		return nil, err
	}
	return req, nil
}

// DecodeInferResponse decodes an OIP inference response body (the client side of
// EncodeInferResponse). headerLen is the Inference-Header-Content-Length header
// value, or 0 when absent. The returned tensors may alias body.
func DecodeInferResponse(body []byte, headerLen int) (*serving.InferResponse, error) {
	js, bin, hasBin, err := splitBody(body, headerLen)
	if err != nil {
		return nil, err
	}
	s := &scanner{buf: js, state: newDecodeState(len(body), DecodeOptions{})}
	s.d = &s.state
	resp := &serving.InferResponse{}
	var outputs []decodedTensor
	err = s.objectFields(func(key []byte) error {
		var err error
		switch string(key) {
		case "model_name":
			resp.ModelName, err = readOptString(s, "model_name")
		case "model_version":
			resp.ModelVersion, err = readOptString(s, "model_version")
		case "id":
			resp.ID, err = readID(s)
		case "parameters":
			resp.Parameters, err = s.readParams()
		case "outputs":
			if null, err := s.isNull(); null || err != nil {
				return err
			}
			outputs = outputs[:0]
			err = s.arrayElems(func(i int) error {
				dt, err := decodeTensor(s, "output", i)
				outputs = append(outputs, dt)
				return err
			})
		default:
			err = s.skipValue(0)
		}
		return err
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, err
	}
	if resp.Outputs, err = finishTensors(s.d, outputs, "output", bin, hasBin); err != nil {
		return nil, err
	}
	return resp, nil
}

// finishTensors gives the decoded tensors their binary data and returns them.
func finishTensors(d *decodeState, ts []decodedTensor, kind string, bin []byte, hasBin bool) ([]*tensor.Tensor, error) {
	if err := assignBinary(d, ts, kind, bin, hasBin); err != nil {
		return nil, err
	}
	out := make([]*tensor.Tensor, len(ts))
	for i, dt := range ts {
		out[i] = dt.t
	}
	return out, nil
}

func readID(s *scanner) (string, error) { return readOptString(s, "id") }

// readOptString reads a string field that may also be null.
func readOptString(s *scanner, field string) (string, error) {
	if null, err := s.isNull(); null || err != nil {
		return "", err
	}
	if s.peek() != '"' {
		at := s.pos
		if err := s.skipValue(0); err != nil {
			return "", err
		}
		return "", invalid("%q at offset %d must be a string", field, at)
	}
	v, err := s.readString()
	return string(v), err
}

// readOutputRequest reads one $request_output.
func readOutputRequest(s *scanner, index int) (serving.OutputRequest, error) {
	var o serving.OutputRequest
	err := s.objectFields(func(key []byte) error {
		var err error
		switch string(key) {
		case "name":
			o.Name, err = readOptString(s, "name")
		case "parameters":
			o.Parameters, err = s.readParams()
		default:
			err = s.skipValue(0)
		}
		return err
	})
	if err == nil && o.Name == "" {
		err = invalid("output %d: name is required", index)
	}
	return o, err
}

// checkNames rejects two tensors with the same name.
func checkNames(ts []decodedTensor, kind string) error {
	if len(ts) < 2 {
		return nil
	}
	seen := make(map[string]struct{}, len(ts))
	for _, dt := range ts {
		if _, dup := seen[dt.t.Name]; dup {
			return invalid("%s %q appears more than once", kind, dt.t.Name)
		}
		seen[dt.t.Name] = struct{}{}
	}
	return nil
}
