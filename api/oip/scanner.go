package oip

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

// maxDepth bounds JSON nesting so a hostile body cannot grow the stack without limit.
const maxDepth = 512

// scanner is a small JSON tokenizer over a byte slice. It validates as it goes and
// reports errors with the byte offset where the problem is, which encoding/json's
// generic decoding cannot do cheaply. Values are read in place; strings without
// escapes and number literals are returned as sub-slices of buf.
type scanner struct {
	buf []byte
	pos int
	// scratch holds the unescaped form of the last string that had escapes.
	scratch []byte
	// escaped is set when the last string read had escapes: its bytes are in
	// scratch, not in buf.
	escaped bool
	// d bounds what decoding allocates (nil: no bound); it points at state,
	// or at the state of the scanner this one was made from.
	d     *decodeState
	state decodeState
}

// syntaxErr is an InvalidArgument error naming the offset of the problem.
func (s *scanner) syntaxErr(at int, format string, args ...any) error {
	return errs.New(errs.InvalidArgument, "invalid JSON at offset %d: %s", at, fmt.Sprintf(format, args...))
}

// unexpected describes the byte at s.pos (or the end of input) for an error.
func (s *scanner) unexpected(want string) error {
	if s.pos >= len(s.buf) {
		return s.syntaxErr(s.pos, "unexpected end of input, expected %s", want)
	}
	return s.syntaxErr(s.pos, "unexpected %s, expected %s", describeByte(s.buf[s.pos]), want)
}

func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func (s *scanner) skipWS() {
	for s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end of input.
func (s *scanner) peek() byte {
	s.skipWS()
	if s.pos < len(s.buf) {
		return s.buf[s.pos]
	}
	return 0
}

// expect consumes c (after whitespace) or fails.
func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return s.unexpected(strconv.QuoteRune(rune(c)))
	}
	s.pos++
	return nil
}

// end checks that only whitespace is left.
func (s *scanner) end() error {
	s.skipWS()
	if s.pos != len(s.buf) {
		return s.syntaxErr(s.pos, "unexpected %s after the top-level value", describeByte(s.buf[s.pos]))
	}
	return nil
}

// objectFields iterates over an object's members: fn is called with the key while
// the scanner sits at the value, and must consume the value.
func (s *scanner) objectFields(fn func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.unexpected("a string object key")
		}
		key, err := s.readString()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		s.skipWS()
		if err := fn(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.unexpected("',' or '}' after object member")
		}
	}
}

// arrayElems iterates over an array's elements; fn must consume each element.
func (s *scanner) arrayElems(fn func(i int) error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		s.skipWS()
		if err := fn(i); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.unexpected("',' or ']' after array element")
		}
	}
}

// isNull consumes a null literal if one is next.
func (s *scanner) isNull() (bool, error) {
	if s.peek() != 'n' {
		return false, nil
	}
	return true, s.literal("null")
}

func (s *scanner) literal(lit string) error {
	start := s.pos
	if len(s.buf)-s.pos < len(lit) || string(s.buf[s.pos:s.pos+len(lit)]) != lit {
		return s.syntaxErr(start, "invalid literal, expected %s", lit)
	}
	s.pos += len(lit)
	return nil
}

// readBool reads true or false.
func (s *scanner) readBool() (bool, error) {
	switch s.peek() {
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	}
	return false, s.unexpected("true or false")
}

// readString reads a string and returns its unescaped bytes. The result aliases
// buf or s.scratch and is valid until the next readString call.
func (s *scanner) readString() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.unexpected("a string")
	}
	s.pos++
	start := s.pos
	for i := start; i < len(s.buf); i++ {
		c := s.buf[i]
		switch {
		case c == '"':
			s.pos = i + 1
			s.escaped = false
			return s.buf[start:i], nil
		case c == '\\':
			s.escaped = true
			return s.readEscaped(start, i)
		case c < 0x20:
			return nil, s.syntaxErr(i, "control character 0x%02x in string", c)
		}
	}
	return nil, s.syntaxErr(len(s.buf), "unexpected end of input in string starting at offset %d", start-1)
}

// readEscaped continues a string from its first backslash at i.
func (s *scanner) readEscaped(start, i int) ([]byte, error) {
	out := append(s.scratch[:0], s.buf[start:i]...)
	for i < len(s.buf) {
		c := s.buf[i]
		switch {
		case c == '"':
			s.pos = i + 1
			s.scratch = out
			return out, nil
		case c < 0x20:
			return nil, s.syntaxErr(i, "control character 0x%02x in string", c)
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(s.buf) {
			break
		}
		esc := s.buf[i+1]
		switch esc {
		case '"', '\\', '/':
			out = append(out, esc)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s.buf, i+2)
			if !ok {
				return nil, s.syntaxErr(i, "invalid \\u escape")
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(-1), false
				if i+1 < len(s.buf) && s.buf[i] == '\\' && s.buf[i+1] == 'u' {
					r2, ok2 = hex4(s.buf, i+2)
				}
				if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return nil, s.syntaxErr(i, "invalid escape %s in string", describeByte(esc))
		}
		i += 2
	}
	return nil, s.syntaxErr(len(s.buf), "unexpected end of input in string starting at offset %d", start-1)
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// readNumber reads a JSON number literal, validating the JSON grammar (which is
// stricter than strconv's), and reports whether it is an integer literal.
func (s *scanner) readNumber() (lit []byte, integer bool, err error) {
	s.skipWS()
	start, i, b := s.pos, s.pos, s.buf
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return nil, false, s.unexpected("a digit")
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			s.pos = i
			return nil, false, s.unexpected("a digit after the decimal point")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			s.pos = i
			return nil, false, s.unexpected("a digit in the exponent")
		}
	}
	s.pos = i
	return b[start:i], integer, nil
}

// skipValue consumes any JSON value, validating it.
func (s *scanner) skipValue(depth int) error {
	if depth > maxDepth {
		return s.syntaxErr(s.pos, "nesting deeper than %d levels", maxDepth)
	}
	switch c := s.peek(); c {
	case '{':
		return s.objectFields(func([]byte) error { return s.skipValue(depth + 1) })
	case '[':
		return s.arrayElems(func(int) error { return s.skipValue(depth + 1) })
	case '"':
		_, err := s.readString()
		return err
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		_, _, err := s.readNumber()
		if err != nil && c != '-' && (c < '0' || c > '9') {
			return s.unexpected("a JSON value")
		}
		return err
	}
}

// readParamValue reads a parameter value: a string, number or boolean. Integral
// numbers that fit stay exact as int64; other numbers become float64.
func (s *scanner) readParamValue(key string) (any, error) {
	switch c := s.peek(); {
	case c == '"':
		v, err := s.readString()
		if err != nil {
			return nil, err
		}
		return string(v), nil
	case c == 't' || c == 'f':
		return s.readBool()
	case c == '-' || (c >= '0' && c <= '9'):
		lit, integer, err := s.readNumber()
		if err != nil {
			return nil, err
		}
		if integer {
			if v, err := strconv.ParseInt(string(lit), 10, 64); err == nil {
				return v, nil
			}
		}
		f, err := strconv.ParseFloat(string(lit), 64)
		if err != nil {
			return nil, errs.New(errs.InvalidArgument, "parameter %q: number %s is out of range", key, lit)
		}
		return f, nil
	case c == 0:
		return nil, s.unexpected("a parameter value")
	default:
		at := s.pos
		if err := s.skipValue(0); err != nil {
			return nil, err
		}
		return nil, errs.New(errs.InvalidArgument, "parameter %q at offset %d: value must be a string, number or boolean", key, at)
	}
}

// readParams reads a $parameters object (null means none).
func (s *scanner) readParams() (map[string]any, error) {
	if null, err := s.isNull(); null || err != nil {
		return nil, err
	}
	var m map[string]any
	err := s.objectFields(func(key []byte) error {
		if err := s.d.chargeItem(paramCost, "parameters"); err != nil {
			return err
		}
		k := string(key)
		v, err := s.readParamValue(k)
		if err != nil {
			return err
		}
		if m == nil {
			m = make(map[string]any, 2)
		}
		m[k] = v
		return nil
	})
	return m, err
}
