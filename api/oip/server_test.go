package oip_test

// These tests run the handler inside a real server (real registry over SQLite,
// real serving manager and ONNX Runtime) to check what happens before a body
// is decoded.

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// TestUnknownModelIsRefusedBeforeItsBody: a request for a model that does not
// exist is answered 404 before its body is read — the client has sent 1 KiB of
// the 60 MB it declared when the answer arrives.
func TestUnknownModelIsRefusedBeforeItsBody(t *testing.T) {
	srv := testutil.StartServer(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest("POST", srv.URL+"/v2/models/nope/infer", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 60 << 20
	go pw.Write(append([]byte(`{"inputs":[{"name":"s","datatype":"BYTES","shape":[20000000],"data":[`), bytes.Repeat([]byte(`"",`), 300)...))
	type answer struct {
		status int
		body   string
		err    error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := testutil.Client.Do(req)
		if err != nil {
			got <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- answer{status: resp.StatusCode, body: string(b)}
	}()
	select {
	case a := <-got:
		if a.err != nil || a.status != http.StatusNotFound || !strings.Contains(a.body, `nope`) {
			t.Fatalf("answer: %d %q, %v; want 404 naming the model", a.status, a.body, a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer while the body is still unsent: the server waits to read it before looking up the model")
	}
}

// TestInputTheModelCannotTakeIsNotDecoded: a 16 MiB BYTES tensor sent to a
// model whose input is FP32 is refused with the signature's message, without
// decoding it: the request costs little more than its body.
func TestInputTheModelCannotTakeIsNotDecoded(t *testing.T) {
	srv := testutil.StartServer(t)
	srv.Push(t, "m", "mlp")
	const n = 16 << 20 / 3
	body := []byte(`{"inputs":[{"name":"x","shape":[` + strconv.Itoa(n) + `],"datatype":"BYTES","data":[` +
		strings.Repeat(`"",`, n-1) + `""]}]}`)
	post := func() (int, string) {
		resp, err := testutil.Client.Post(srv.URL+"/v2/models/m/infer", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got)
	}
	post() // the first request resolves and caches the model
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	status, msg := post()
	runtime.ReadMemStats(&after)
	if status != http.StatusBadRequest || !strings.Contains(msg, "input x expects shape [-1,4] FP32, got ["+strconv.Itoa(n)+"] BYTES") {
		t.Fatalf("answer: %d %q", status, msg)
	}
	// The body itself, once on each side of the connection, and buffers:
	// decoding the tensor would add 8× the body.
	alloc := int64(after.TotalAlloc - before.TotalAlloc)
	t.Logf("a %d-byte body cost %d bytes in all (%.1f×)", len(body), alloc, float64(alloc)/float64(len(body)))
	if limit := int64(4 * len(body)); alloc > limit {
		t.Fatalf("refusing it allocated %d bytes, more than %d: the tensor was decoded", alloc, limit)
	}
}
