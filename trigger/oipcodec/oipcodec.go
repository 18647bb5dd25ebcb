// Package oipcodec is the trigger Codec of events that are Open Inference
// Protocol v2 JSON requests, as a REST client would send them; results are
// OIP v2 JSON responses. The decoding is the REST API's own (api/oip), so an
// event the REST API would refuse is dead-lettered with the same message.
package oipcodec

import (
	"fmt"

	"github.com/nimbus-ai/nimbus/api/oip"
	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/events/format"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/trigger"
)

// Codec implements trigger.Codec.
type Codec struct {
	// CloudEvents: each event is a structured-mode CloudEvent whose data is
	// the request; the envelope's id is the request's id unless it has one.
	CloudEvents bool
}

var _ trigger.Codec = Codec{}

// Request decodes the event as an OIP v2 JSON request (its model and
// version, named by the trigger, are ignored if present).
func (c Codec) Request(m *events.Message) (*serving.InferRequest, any, error) {
	payload, id := m.Payload, ""
	if c.CloudEvents {
		var err error
		if payload, id, err = format.CloudEventData(m.Payload); err != nil {
			return nil, nil, err
		}
	}
	req, err := oip.DecodeInferRequest(payload, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("not an inference request: %w", err)
	}
	if req.ID == "" {
		req.ID = id
	}
	return req, nil, nil
}

// Result encodes the answer as an OIP v2 JSON response (binary outputs
// asked for are written as JSON: an event carries one body).
func (Codec) Result(_ any, req *serving.InferRequest, resp *serving.InferResponse) ([]byte, error) {
	body, headerLen, err := oip.EncodeInferResponse(nil, resp, nil)
	if err != nil {
		return nil, err
	}
	if headerLen != 0 {
		return nil, fmt.Errorf("the answer has binary outputs, which an event cannot carry")
	}
	return body, nil
}
