package oip

import "math"

// Exact powers of ten: every one is representable, so one multiplication or
// division by them rounds correctly (Clinger's fast path, as strconv's).
var (
	pow10f32 = [...]float32{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10}
	pow10f64 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
		1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}
)

// parseFloatFast parses lit, a JSON number literal the scanner has validated,
// for the common short decimals ("0.25", "-1.5e3", "12"): when the decimal
// mantissa and the power of ten are both exact at bitSize, one operation gives
// the correctly rounded result, the same value strconv.ParseFloat returns. It
// reports false for everything else (long mantissas, big exponents), which the
// caller hands to strconv. Skipping strconv's general reader roughly halves the
// cost of a number.
func parseFloatFast(lit []byte, bitSize int) (float64, bool) {
	i, neg := 0, false
	if len(lit) > 0 && lit[0] == '-' {
		neg, i = true, 1
	}
	var mant uint64
	digits, exp := 0, 0
	for ; i < len(lit) && lit[i] >= '0' && lit[i] <= '9'; i++ {
		mant = mant*10 + uint64(lit[i]-'0')
		if mant != 0 {
			digits++
		}
	}
	if i < len(lit) && lit[i] == '.' {
		for i++; i < len(lit) && lit[i] >= '0' && lit[i] <= '9'; i++ {
			mant = mant*10 + uint64(lit[i]-'0')
			if mant != 0 {
				digits++
			}
			exp--
		}
	}
	if digits > 15 { // mant may have overflowed; and it is too long for the fast path anyway
		return 0, false
	}
	if i < len(lit) && (lit[i] == 'e' || lit[i] == 'E') {
		i++
		eneg := false
		if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
			eneg = lit[i] == '-'
			i++
		}
		e := 0
		for ; i < len(lit) && lit[i] >= '0' && lit[i] <= '9'; i++ {
			if e > 1000 {
				return 0, false
			}
			e = e*10 + int(lit[i]-'0')
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(lit) {
		return 0, false
	}
	if bitSize == 32 && (mant >= 1<<24 || exp < -10 || exp > 10) {
		return float32ViaFloat64(mant, exp, neg)
	}
	if bitSize == 32 {
		f := float32(mant)
		if exp < 0 {
			f /= pow10f32[-exp]
		} else {
			f *= pow10f32[exp]
		}
		if neg {
			f = -f
		}
		return float64(f), true
	}
	f, ok := exact64(mant, exp)
	if ok && neg {
		f = -f
	}
	return f, ok
}

// exact64 is mant × 10^exp correctly rounded to float64 when both are exact
// in float64 (Clinger's fast path); false otherwise.
func exact64(mant uint64, exp int) (float64, bool) {
	if mant >= 1<<53 || exp < -22 || exp > 22 {
		return 0, false
	}
	f := float64(mant)
	if exp < 0 {
		f /= pow10f64[-exp]
	} else {
		f *= pow10f64[exp]
	}
	return f, true
}

// float32ViaFloat64 parses what float32's own exact path cannot (shortest
// float32 texts have up to 9 digits, past its 2^24): the float64 fast path
// gives the correctly rounded float64 of the decimal, and rounding that to
// float32 is right unless the float64 lies exactly halfway between two
// float32s — the decimal may be on either side of that point, and rounding
// twice could go the wrong way. Those, subnormals (their halfway points lie
// elsewhere) and values past float32's range go to strconv.
func float32ViaFloat64(mant uint64, exp int, neg bool) (float64, bool) {
	d, ok := exact64(mant, exp)
	if !ok {
		return 0, false
	}
	const dropped = 52 - 23 // mantissa bits float64 has beyond float32's
	if d != 0 && (d < 0x1p-126 || d > math.MaxFloat32 || math.Float64bits(d)&(1<<dropped-1) == 1<<(dropped-1)) {
		return 0, false
	}
	f := float32(d)
	if neg {
		f = -f
	}
	return float64(f), true
}
