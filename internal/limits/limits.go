// Package limits bounds what one client can hold on the request path: HTTP body
// and response deadlines with a minimum transfer rate (a client dribbling bytes is
// cut off, a large upload over a slow but honest link is not), and one budget of
// request bytes in flight shared by REST bodies and gRPC messages, refused with
// 429 / RESOURCE_EXHAUSTED past it instead of growing memory.
package limits

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Timeouts are the HTTP transfer deadlines. Like Apache's mod_reqtimeout, a
// transfer gets a fixed allowance and then one more second for every MinRate
// bytes that arrive (or leave): slow links may move large bodies, a client that
// sends one byte every few seconds is cut off once its allowance is spent.
type Timeouts struct {
	// Read is the allowance for a request body, counted from the start of the
	// handler; 0 means no body deadline.
	Read time.Duration
	// Write is the allowance for a response, counted from its first byte; 0
	// means no write deadline.
	Write time.Duration
	// MinRate in bytes per second extends both deadlines as data moves; 0 means
	// no extension (a fixed Read / Write deadline).
	MinRate int64
}

// ErrSlowBody is the error (errors.Is) a request body read returns once its
// deadline has passed.
var ErrSlowBody = errors.New("request body arrived too slowly")

// Handler applies t to every request next serves. A body read past its
// deadline fails with ErrSlowBody (the connection is then closed by the
// server); a response write past its deadline fails and closes the connection.
func (t Timeouts) Handler(next http.Handler) http.Handler {
	if t.Read <= 0 && t.Write <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if t.Read > 0 && r.Body != nil && r.Body != http.NoBody {
			b := &deadlineBody{ReadCloser: r.Body, rc: rc, start: time.Now(), t: t}
			b.extend()
			// The server looks at the body it made once the handler answers (a
			// large unread remainder closes the connection instead of being
			// read): give it back.
			orig := r.Body
			r.Body = b
			defer func() { r.Body = orig }()
		}
		if t.Write <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		// The server clears the write deadline after each response, so a
		// deadline set here never outlives its request.
		next.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: rc, t: t}, r)
	})
}

// extension is how much longer n transferred bytes earn at rate bytes/s.
func extension(n, rate int64) time.Duration {
	if rate <= 0 || n <= 0 {
		return 0
	}
	return time.Duration(float64(n) / float64(rate) * float64(time.Second))
}

// deadlineBody moves the connection's read deadline as the body arrives.
type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	t     Timeouts
	n     int64 // bytes read so far
}

func (b *deadlineBody) deadline() time.Time {
	return b.start.Add(b.t.Read + extension(b.n, b.t.MinRate))
}

func (b *deadlineBody) extend() {
	// Not supported (a ResponseWriter that does not unwrap to the server's)
	// leaves the body without a deadline, as before.
	_ = b.rc.SetReadDeadline(b.deadline())
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, fmt.Errorf("%w: %d bytes in %s (the limit is %s plus 1s per %s): %w",
			ErrSlowBody, b.n, time.Since(b.start).Round(time.Millisecond), b.t.Read, rateString(b.t.MinRate), err)
	}
	if n > 0 && b.t.MinRate > 0 {
		b.extend()
	}
	return n, err
}

// deadlineWriter sets the connection's write deadline at the response's first
// byte and moves it as the response leaves.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	t       Timeouts
	started time.Time
	n       int64
}

func (w *deadlineWriter) begin() {
	if w.started.IsZero() {
		w.started = time.Now()
		_ = w.rc.SetWriteDeadline(w.started.Add(w.t.Write))
	}
}

func (w *deadlineWriter) WriteHeader(code int) {
	w.begin()
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.begin()
	if w.t.MinRate > 0 {
		// Earn the time for these bytes before they are written.
		_ = w.rc.SetWriteDeadline(w.started.Add(w.t.Write + extension(w.n+int64(len(p)), w.t.MinRate)))
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func rateString(rate int64) string {
	if rate <= 0 {
		return "unlimited"
	}
	if rate%(1<<10) == 0 {
		return strconv.FormatInt(rate>>10, 10) + " KiB"
	}
	return strconv.FormatInt(rate, 10) + " bytes"
}
