package oip

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// checkFloatFast compares parseFloatFast with strconv on one JSON number literal.
func checkFloatFast(t *testing.T, lit string) {
	t.Helper()
	for _, bits := range []int{32, 64} {
		got, ok := parseFloatFast([]byte(lit), bits)
		if !ok {
			continue
		}
		want, err := strconv.ParseFloat(lit, bits)
		if err != nil {
			t.Fatalf("parseFloatFast(%q, %d) = %v, but strconv fails: %v", lit, bits, got, err)
		}
		if math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseFloatFast(%q, %d) = %v (%#x), strconv = %v (%#x)", lit, bits, got, math.Float64bits(got), want, math.Float64bits(want))
		}
	}
}

func TestParseFloatFast(t *testing.T) {
	for _, lit := range []string{
		"0", "-0", "1", "-1", "0.5", "1.5e3", "1.5E+3", "1e-10", "1e10", "1e22", "1e23", "-0.0",
		"16777215", "16777216", "16777217", "9007199254740991", "9007199254740993", "123456789012345",
		"1234567890123456", "0.000000000000000000001", "1e-22", "1e-23", "3.4028235e38", "1e400", "1e-400",
		"0.1", "0.2", "0.3", "2.7182817", "3.1415927", "1.00000011920928955078125", "7.038531e-26",
	} {
		checkFloatFast(t, lit)
	}
	// Shortest float32 and float64 texts, as clients send them, must mostly take the fast path.
	r := rand.New(rand.NewPCG(1, 2))
	fast := 0
	const n = 20000
	for i := range n {
		var lit string
		switch i % 3 {
		case 0:
			lit = strconv.FormatFloat(float64(float32(r.NormFloat64())), 'g', -1, 32)
		case 1:
			lit = strconv.FormatFloat(r.NormFloat64()*1000, 'g', -1, 64)
		default:
			lit = strconv.FormatFloat(float64(r.IntN(200000)-100000)/1000, 'f', -1, 64)
		}
		checkFloatFast(t, lit)
		if _, ok := parseFloatFast([]byte(lit), 32); ok {
			fast++
		}
	}
	if fast < n/4 {
		t.Errorf("only %d of %d literals took the fast path", fast, n)
	}

	// Shortest float32 texts (up to 9 digits) take the fast path as FP32
	// almost always; decimals near a point halfway between two float32s
	// (where rounding through float64 could go the wrong way) come out as
	// strconv's, fast path or not.
	fast32 := 0
	for range n {
		x := float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(20)-10)))
		checkFloatFast(t, strconv.FormatFloat(float64(x), 'g', -1, 32))
		if _, ok := parseFloatFast([]byte(strconv.FormatFloat(float64(x), 'g', -1, 32)), 32); ok {
			fast32++
		}
		half := (float64(x) + float64(math.Nextafter32(x, float32(math.Inf(1))))) / 2
		for _, prec := range []int{-1, 9, 10, 12, 15, 17} {
			checkFloatFast(t, strconv.FormatFloat(half, 'g', prec, 64))
		}
	}
	if fast32 < n*9/10 {
		t.Errorf("only %d of %d shortest float32 texts took the FP32 fast path", fast32, n)
	}
}

func FuzzParseFloatFast(f *testing.F) {
	for _, s := range []string{"0", "-1.5e3", "0.1", "16777217", "1e22", "123.456e-7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, lit string) {
		s := &scanner{buf: []byte(lit)}
		got, _, err := s.readNumber()
		if err != nil || s.pos != len(lit) {
			return // not a JSON number: the decoder never calls parseFloatFast on it
		}
		checkFloatFast(t, string(got))
	})
}
