package oip

import (
	"math"
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

// BenchmarkDecodeShortestFP32 decodes one row of 64 FP32 values written as
// shortest float32 texts (up to 9 digits: "1.9866497"), as the benchmark
// suite's mlp_medium request and most clients' float32 arrays are.
// `go test -run '^$' -bench DecodeShortestFP32 ./api/oip`
func BenchmarkDecodeShortestFP32(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"inputs":[{"name":"x","shape":[1,64],"datatype":"FP32","data":[`)
	for i := range 64 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatFloat(float64(float32(2*math.Sin(float64(i)*0.37))), 'g', -1, 32))
	}
	sb.WriteString(`]}]}`)
	body := []byte(sb.String())
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := DecodeInferRequest(body, 0); err != nil {
			b.Fatal(err)
		}
	}
}
