package oipcodec_test

import (
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/events"
	"github.com/nimbus-ai/nimbus/trigger/oipcodec"
)

const request = `{"id":"r1","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`

func TestRequests(t *testing.T) {
	msg := func(p string) *events.Message { return events.NewMessage([]byte(p), nil, nil) }
	req, _, err := oipcodec.Codec{}.Request(msg(request))
	if err != nil || req.ID != "r1" || len(req.Inputs) != 1 || req.Inputs[0].Name != "x" {
		t.Fatalf("plain: %+v, %v", req, err)
	}
	ce := oipcodec.Codec{CloudEvents: true}
	noID := strings.Replace(request, `"id":"r1",`, "", 1)
	req, _, err = ce.Request(msg(`{"specversion":"1.0","id":"ce-7","type":"txn","source":"/p","datacontenttype":"application/json","data":` + noID + `}`))
	if err != nil || req.ID != "ce-7" || len(req.Inputs) != 1 {
		t.Fatalf("CloudEvent: %+v, %v", req, err)
	}
	for name, tt := range map[string]struct {
		codec   oipcodec.Codec
		payload string
		want    string
	}{
		"not JSON":         {oipcodec.Codec{}, `{"inputs":`, "not an inference request"},
		"wrong shape":      {oipcodec.Codec{}, strings.Replace(request, "[1,4]", "[1,5]", 1), "not an inference request"},
		"not a CloudEvent": {ce, request, "not a CloudEvent 1.0"},
		"no id":            {ce, `{"specversion":"1.0","data":` + request + `}`, "CloudEvent without an id"},
		"XML data":         {ce, `{"specversion":"1.0","id":"a","datacontenttype":"text/xml","data":"<x/>"}`, "CloudEvent data is text/xml, not JSON"},
		"data not object":  {ce, `{"specversion":"1.0","id":"a","data":[1]}`, "CloudEvent data is not a JSON object"},
	} {
		if _, _, err := tt.codec.Request(msg(tt.payload)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v (want %q)", name, err, tt.want)
		}
	}
}
