package oip

import (
	"strconv"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/serving"
)

// request64x4 is a 64-row × 4 FP32 request as a typical client sends it (nested rows).
func request64x4() []byte {
	var b strings.Builder
	b.WriteString(`{"id":"bench","inputs":[{"name":"x","shape":[64,4],"datatype":"FP32","data":[`)
	for r := range 64 {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('[')
		for c := range 4 {
			if c > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatFloat(float64(r)*0.173+float64(c)*1.37, 'g', -1, 32))
		}
		b.WriteByte(']')
	}
	b.WriteString(`]}]}`)
	return []byte(b.String())
}

func BenchmarkCodec64x4FP32(b *testing.B) {
	body := request64x4()
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := DecodeInferRequest(body, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	req, err := DecodeInferRequest(body, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		resp := responseFor(req)
		buf := make([]byte, 0, 8192)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := EncodeInferResponse(buf[:0], resp, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode+encode", func(b *testing.B) {
		buf := make([]byte, 0, 8192)
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			req, err := DecodeInferRequest(body, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := EncodeInferResponse(buf[:0], responseFor(req), req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func responseFor(req *serving.InferRequest) *serving.InferResponse {
	return &serving.InferResponse{ModelName: "bench", ModelVersion: "1", ID: req.ID, Outputs: req.Inputs}
}
