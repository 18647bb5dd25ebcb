package onnx

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
)

// The inspector walks the protobuf in place: a message is a span of the
// artifact, a field is a tag plus a value, and a length-delimited value is
// only read when the inspector needs its bytes (names, types); weights and
// other large payloads are stepped over by offset. So inspecting a 1 GiB model
// from a file reads a few KiB of headers, and memory stays bounded whatever the
// artifact's size.

// source gives the walker the artifact's bytes by offset.
type source interface {
	// at returns the n bytes at off; the slice is only valid until the next call.
	// The caller never asks past the end of the artifact.
	at(off int64, n int) ([]byte, error)
}

// memSource is an artifact already in memory (what Load hands to ONNX Runtime).
type memSource []byte

func (m memSource) at(off int64, n int) ([]byte, error) { return m[off : off+int64(n)], nil }

// defaultWindow is how much a fileSource reads at a time: message headers that
// lie close together (a graph's nodes, a tensor's fields) cost one read.
const defaultWindow = 64 << 10

// fileSource reads an artifact through a window over an io.ReaderAt.
type fileSource struct {
	r    io.ReaderAt
	size int64
	win  int    // bytes to read per refill (at least what the caller asks)
	buf  []byte // buf holds the bytes at [off, off+len(buf))
	off  int64
}

func newFileSource(r io.ReaderAt, size int64, window int) *fileSource {
	return &fileSource{r: r, size: size, win: window}
}

func (f *fileSource) at(off int64, n int) ([]byte, error) {
	if off >= f.off && off+int64(n) <= f.off+int64(len(f.buf)) {
		i := off - f.off
		return f.buf[i : i+int64(n)], nil
	}
	want := int64(max(n, f.win))
	want = min(want, f.size-off)
	if int64(cap(f.buf)) < want {
		f.buf = make([]byte, want)
	}
	f.buf = f.buf[:want]
	got, err := f.r.ReadAt(f.buf, off)
	if int64(got) == want {
		err = nil // io.ReaderAt may report EOF with the last byte
	}
	if err != nil {
		f.buf = f.buf[:0]
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("the file ended at %d bytes, before its declared %d: %w", off+int64(got), f.size, io.ErrUnexpectedEOF)
		}
		return nil, &readError{err}
	}
	f.off = off
	return f.buf[:n], nil
}

// readError is a failure to read the artifact (not a fault of its contents):
// its text (a path, an OS error) is for the log, never for the client.
type readError struct{ err error }

func (e *readError) Error() string { return "read: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// span is a message (or any length-delimited value) inside the artifact.
type span struct{ off, end int64 }

func (s span) len() int64 { return s.end - s.off }

// field is one decoded field header: v is a varint's value; val is a
// length-delimited field's payload (not read).
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	val span
}

// maxHeader is the most bytes a tag plus a varint (or a length) can take.
const maxHeader = 2 * 10

// walker decodes messages of one artifact.
type walker struct {
	src source
	// kept counts the bytes of what the inspector keeps (names, shapes, type
	// strings): a signature cannot grow past maxKept whatever the model holds.
	kept int64
}

// errBadWire marks failures of the protobuf encoding itself.
var errBadWire = errors.New("bad protobuf")

// each calls fn for every field of message m, in order. Groups (a wire type ONNX
// never uses) are refused.
func (w *walker) each(m span, fn func(f field) error) error {
	for off := m.off; off < m.end; {
		hdr, err := w.src.at(off, int(min(int64(maxHeader), m.end-off)))
		if err != nil {
			return err
		}
		num, typ, n := protowire.ConsumeTag(hdr)
		if n < 0 {
			return fmt.Errorf("%w tag at byte %d: %w", errBadWire, off, protowire.ParseError(n))
		}
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			var k int
			f.v, k = protowire.ConsumeVarint(hdr[n:])
			if k < 0 {
				return fmt.Errorf("%w field %d at byte %d: %w", errBadWire, num, off, protowire.ParseError(k))
			}
			off += int64(n + k)
		case protowire.BytesType:
			l, k := protowire.ConsumeVarint(hdr[n:])
			if k < 0 {
				return fmt.Errorf("%w field %d at byte %d: %w", errBadWire, num, off, protowire.ParseError(k))
			}
			start := off + int64(n+k)
			if l > uint64(m.end-start) {
				return fmt.Errorf("%w field %d at byte %d: its %d bytes run past the end of the message", errBadWire, num, off, l)
			}
			f.val = span{start, start + int64(l)}
			off = f.val.end
		case protowire.Fixed32Type, protowire.Fixed64Type:
			size := int64(4)
			if typ == protowire.Fixed64Type {
				size = 8
			}
			if m.end-off-int64(n) < size {
				return fmt.Errorf("%w field %d at byte %d: truncated", errBadWire, num, off)
			}
			off += int64(n) + size
		default:
			return fmt.Errorf("%w field %d at byte %d: wire type %d is not used by ONNX", errBadWire, num, off, typ)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// bytesOf checks that f is length-delimited (what every message and string
// field of ONNX is).
func bytesOf(f field) error {
	if f.typ != protowire.BytesType {
		return fmt.Errorf("field %d has the wrong wire type", f.num)
	}
	return nil
}

// varintOf checks that f is a varint.
func varintOf(f field) error {
	if f.typ != protowire.VarintType {
		return fmt.Errorf("field %d has the wrong wire type", f.num)
	}
	return nil
}

// maxNameLen bounds every string the inspector reads (names, dim params).
const maxNameLen = 64 << 10

// maxKept bounds what the inspector keeps of one model (see walker.kept).
const maxKept = 16 << 20

// str reads the string at s, counting it against maxKept.
func (w *walker) str(s span) (string, error) {
	if s.len() > maxNameLen {
		return "", fmt.Errorf("a name of %d bytes (at most %d)", s.len(), maxNameLen)
	}
	if err := w.keep(s.len()); err != nil {
		return "", err
	}
	b, err := w.src.at(s.off, int(s.len()))
	return string(b), err
}

// keep counts n more kept bytes.
func (w *walker) keep(n int64) error {
	w.kept += n
	if w.kept > maxKept {
		return fmt.Errorf("the model's signature takes more than %d bytes", maxKept)
	}
	return nil
}

// maxShown is how much of a name or file location an error message quotes.
const maxShown = 200

// shown reads up to maxShown bytes of the string at s for a message; it never
// fails (a message is best effort) and is not counted against maxKept.
func (w *walker) shown(s span) string {
	n := min(s.len(), maxShown)
	b, err := w.src.at(s.off, int(n))
	if err != nil {
		return "?"
	}
	if s.len() > n {
		return string(b) + "..."
	}
	return string(b)
}

// lastBytes returns the last length-delimited field num of message m (best
// effort: a decoding error ends the search).
func (w *walker) lastBytes(m span, num protowire.Number) (span, bool) {
	var (
		out   span
		found bool
	)
	_ = w.each(m, func(f field) error {
		if f.num == num && f.typ == protowire.BytesType {
			out, found = f.val, true
		}
		return nil
	})
	return out, found
}

// lastString returns (for messages) the last string field num of message m, or "".
func (w *walker) lastString(m span, num protowire.Number) string {
	s, found := w.lastBytes(m, num)
	if !found {
		return ""
	}
	return w.shown(s)
}
