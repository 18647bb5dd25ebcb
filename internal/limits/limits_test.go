package limits

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// serve runs h behind t on a real server on 127.0.0.1:0 and returns its address.
func serve(tb testing.TB, t Timeouts, h http.Handler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: t.Handler(h), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// readErrs records what the handler's body read ended with.
type readErrs struct {
	mu   sync.Mutex
	errs []error
	n    []int
}

func (r *readErrs) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, err := io.ReadAll(req.Body)
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.n = append(r.n, len(b))
		r.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		fmt.Fprintf(w, "%d", len(b))
	})
}

func (r *readErrs) last() (error, int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) == 0 {
		return nil, 0, false
	}
	return r.errs[len(r.errs)-1], r.n[len(r.n)-1], true
}

// TestDribblingBodyIsCutOff: a client that sends its body one byte every 50 ms
// (a slowloris POST) is cut off once its allowance is spent — the connection
// closes within the bound — and the handler's read fails with ErrSlowBody.
func TestDribblingBodyIsCutOff(t *testing.T) {
	rec := &readErrs{}
	const allowance = 400 * time.Millisecond
	addr := serve(t, Timeouts{Read: allowance, MinRate: 1024}, rec.handler())
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, conn) // the response, then EOF when the server closes
		closed <- time.Since(start)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	bound := allowance + 2*time.Second
	for {
		select {
		case took := <-closed:
			if took > bound {
				t.Fatalf("the server closed the dribbling connection after %s, more than %s", took, bound)
			}
			err, n, ok := rec.last()
			if !ok || !errors.Is(err, ErrSlowBody) {
				t.Fatalf("the handler's body read ended with %v (after %d bytes), want ErrSlowBody", err, n)
			}
			return
		case <-tick.C:
			if time.Since(start) > bound {
				t.Fatalf("the dribbling connection is still open %s after its body began (allowance %s)", time.Since(start), allowance)
			}
			conn.Write([]byte{'x'}) // fails once the server closed: the loop ends on closed
		}
	}
}

// pacedReader yields left bytes at rate bytes per second: a slow but steady
// upload, whatever buffer sizes its reader asks with.
type pacedReader struct {
	left, rate int
	start      time.Time
	sent       int
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if p.start.IsZero() {
		p.start = time.Now()
	}
	// Wait until the rate allows at least one more chunk of up to len(b).
	due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
	n := min(len(b), p.left)
	p.left -= n
	p.sent += n
	return n, nil
}

// TestSteadyLargeUploadOutlivesTheAllowance: an 8 MiB chunked upload that
// takes several times the fixed allowance still arrives whole, because every
// byte earns time at MinRate.
func TestSteadyLargeUploadOutlivesTheAllowance(t *testing.T) {
	rec := &readErrs{}
	const allowance = 150 * time.Millisecond
	addr := serve(t, Timeouts{Read: allowance, Write: allowance, MinRate: 4 << 20}, rec.handler())
	const size = 8 << 20
	body := &pacedReader{left: size, rate: 10 << 20} // 10 MiB/s: about 0.8 s
	req, err := http.NewRequest("POST", "http://"+addr+"/upload", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // chunked
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK || string(got) != fmt.Sprint(size) {
		t.Fatalf("upload of %d bytes in %s: %d %q", size, took, resp.StatusCode, got)
	}
	if took < 3*allowance {
		t.Fatalf("the upload took %s, not longer than the allowance: the test proves nothing", took)
	}
}

// TestStalledReaderIsCutOff: a client that sends a request and never reads
// the (large) response is disconnected once the write allowance is spent; the
// handler's write fails instead of blocking forever.
func TestStalledReaderIsCutOff(t *testing.T) {
	const allowance = 300 * time.Millisecond
	writeErr := make(chan error, 1)
	chunk := bytes.Repeat([]byte{'z'}, 1<<20)
	addr := serve(t, Timeouts{Write: allowance, MinRate: 256 << 20}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 256 { // 256 MiB: far more than the socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	bound := allowance + 3*time.Second
	select {
	case err := <-writeErr:
		if err == nil {
			t.Fatal("256 MiB were written to a client that reads nothing")
		}
		if took := time.Since(start); took > bound {
			t.Fatalf("the write failed after %s, more than %s", took, bound)
		}
	case <-time.After(bound):
		t.Fatalf("the handler still writes to a stalled client after %s (allowance %s)", bound, allowance)
	}
}

// TestUnreadBodyDoesNotHoldTheAnswer: a handler that answers without reading a
// large body (a request refused up front) is answered at once — the body
// deadline must not make the server wait for the rest of the body.
func TestUnreadBodyDoesNotHoldTheAnswer(t *testing.T) {
	addr := serve(t, Timeouts{Read: 30 * time.Second, Write: 30 * time.Second, MinRate: 64 << 10}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such model", http.StatusNotFound)
	}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{\"inputs\":[", 60<<20)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer while the body is unsent: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNotFound || !resp.Close {
		t.Fatalf("answer %d (close %v), want 404 closing the connection", resp.StatusCode, resp.Close)
	}
}
