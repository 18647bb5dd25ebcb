package oip

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/limits"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// allocated is what fn allocates (TotalAlloc, garbage included), the least of
// two runs with the collector off.
func allocated(fn func()) int64 {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	best := int64(-1)
	for range 2 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fn()
		runtime.ReadMemStats(&after)
		if d := int64(after.TotalAlloc - before.TotalAlloc); best < 0 || d < best {
			best = d
		}
	}
	return best
}

// bytesBody is a JSON request of n empty BYTES elements: the densest body there
// is in Go objects (3 body bytes per 24-byte slice header).
func bytesBody(n int) []byte {
	return []byte(`{"inputs":[{"name":"s","shape":[` + strconv.Itoa(n) + `],"datatype":"BYTES","data":[` +
		strings.Repeat(`"",`, n-1) + `""]}]}`)
}

// TestBytesHeavyBodyStaysWithinTheBound: a 16 MiB body of tiny BYTES elements
// decodes within MaxDecodeFactor × its size (it took 12× when the decoder
// pre-sized an offsets table per element besides the element headers).
func TestBytesHeavyBodyStaysWithinTheBound(t *testing.T) {
	body := bytesBody(16 << 20 / 3)
	var req *serving.InferRequest
	var err error
	got := allocated(func() { req, err = DecodeInferRequest(body, 0) })
	if err != nil {
		t.Fatal(err)
	}
	if n := len(req.Inputs[0].Strings); n != 16<<20/3 {
		t.Fatalf("decoded %d elements", n)
	}
	bound := int64(MaxDecodeFactor*len(body) + decodeSlack)
	t.Logf("%d-byte body: decoding allocated %d bytes (%.1f×)", len(body), got, float64(got)/float64(len(body)))
	if got > bound {
		t.Fatalf("decoding a %d-byte body allocated %d bytes, more than %d× (%d)", len(body), got, MaxDecodeFactor, bound)
	}
}

// TestStringsAliasTheBodyUnlessEscaped: decoded BYTES elements point into the
// body; only escaped ones are copied out.
func TestStringsAliasTheBodyUnlessEscaped(t *testing.T) {
	body := inputJSON("BYTES", "[3]", `["plain","tab\there",""]`)
	req, err := DecodeInferRequest(body, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := req.Inputs[0].Strings
	if string(s[0]) != "plain" || string(s[1]) != "tab\there" || len(s[2]) != 0 {
		t.Fatalf("strings = %q", s)
	}
	if i := bytes.Index(body, []byte("plain")); &body[i] != &s[0][0] {
		t.Error(`"plain" was copied out of the body`)
	}
	if cap(s[0]) != len(s[0]) || cap(s[1]) != len(s[1]) {
		t.Error("an element's capacity reaches past it: appending to it would overwrite the body")
	}
}

// TestInflatingBodiesAreRefusedBeforeTheyInflate: structures that cost far
// more decoded than their bytes (thousands of tiny parameters) are refused
// with 413 once decoding would pass the bound, having allocated no more than it.
func TestInflatingBodiesAreRefusedBeforeTheyInflate(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"parameters":{`)
	for i := range 400_000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + strconv.Itoa(i) + `":1`)
	}
	b.WriteString(`},"inputs":[]}`)
	body := []byte(b.String())
	var err error
	got := allocated(func() { _, err = DecodeInferRequest(body, 0) })
	if errs.KindOf(err) != errs.TooLarge || !strings.Contains(err.Error(), "more than 8×") {
		t.Fatalf("a body of 400000 parameters: %v, want TooLarge", err)
	}
	if bound := int64(MaxDecodeFactor*len(body) + decodeSlack); got > bound {
		t.Fatalf("refusing it allocated %d bytes, more than the %d bound", got, bound)
	}
}

// TestInputsCheckedBeforeTheirData: with the model's signature known, a tensor
// it cannot take is refused before its data is decoded — whether the data
// comes before or after the tensor's header fields.
func TestInputsCheckedBeforeTheirData(t *testing.T) {
	opts := DecodeOptions{Model: "m", Known: true, Inputs: []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 4}}}}
	big := bytesBody(1 << 20) // a BYTES "s" where the model wants FP32 "x"
	var err error
	got := allocated(func() { _, err = DecodeRequest(big, 0, opts) })
	if errs.KindOf(err) != errs.InvalidArgument || !strings.Contains(err.Error(), `unknown input "s": model m expects x FP32 [-1,4]`) {
		t.Fatalf("unknown input: %v", err)
	}
	if got > 1<<20 {
		t.Fatalf("refusing an input the model does not have allocated %d bytes: its data was decoded", got)
	}
	dataFirst := []byte(`{"inputs":[{"data":[1,2,3],"name":"x","datatype":"INT64","shape":[3]}]}`)
	if _, err := DecodeRequest(dataFirst, 0, opts); err == nil || !strings.Contains(err.Error(), "input x expects shape [-1,4] FP32, got [3] INT64") {
		t.Fatalf("data before the header: %v", err)
	}
	ok := inputJSON("FP32", "[1,4]", "[1,2,3,4]")
	if _, err := DecodeRequest(ok, 0, opts); err != nil {
		t.Fatalf("a matching input: %v", err)
	}
}

// TestBodiesReserveTheInflightBudget: while other requests hold the budget, a
// body that does not fit is refused with 429 and Retry-After (before it is
// read whole); one larger than the whole budget with 413; once the budget is
// free the same request succeeds, and everything it held is returned.
func TestBodiesReserveTheInflightBudget(t *testing.T) {
	budget := limits.NewBudget(8 << 20)
	h := openHandler(&fakeBackend{}, Options{Budget: budget})
	data := make([]byte, 2<<20)
	js := `{"inputs":[{"name":"x","shape":[` + strconv.Itoa(len(data)) + `],"datatype":"UINT8","parameters":{"binary_data_size":` + strconv.Itoa(len(data)) + `}}]}`
	body := append([]byte(js), data...)
	binary := func(chunked bool) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/v2/models/m/infer", bytes.NewReader(body))
		req.Header.Set(HeaderContentLength, strconv.Itoa(len(js)))
		if chunked {
			req.ContentLength = -1
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	if err := budget.Reserve(7 << 20); err != nil { // other requests in flight
		t.Fatal(err)
	}
	for _, chunked := range []bool{false, true} {
		rec := binary(chunked)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "maxInflightBytes") {
			t.Fatalf("chunked=%v with the budget held: %d %q (Retry-After %q)", chunked, rec.Code, rec.Body, rec.Header().Get("Retry-After"))
		}
		if used := budget.Used(); used != 7<<20 {
			t.Fatalf("a refused request left %d bytes reserved", used-7<<20)
		}
	}
	budget.Release(7 << 20)
	for _, chunked := range []bool{false, true} {
		if rec := binary(chunked); rec.Code != http.StatusOK {
			t.Fatalf("chunked=%v with the budget free: %d %.200s", chunked, rec.Code, rec.Body)
		}
		if used := budget.Used(); used != 0 {
			t.Fatalf("a served request left %d bytes reserved", used)
		}
	}
	data = make([]byte, 9<<20) // larger than the whole budget
	js = `{"inputs":[{"name":"x","shape":[` + strconv.Itoa(len(data)) + `],"datatype":"UINT8","parameters":{"binary_data_size":` + strconv.Itoa(len(data)) + `}}]}`
	body = append([]byte(js), data...)
	for _, chunked := range []bool{false, true} {
		if rec := binary(chunked); rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "whole budget") {
			t.Fatalf("chunked=%v, a body larger than the whole budget: %d %q", chunked, rec.Code, rec.Body)
		}
	}
}
