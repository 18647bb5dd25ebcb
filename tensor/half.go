package tensor

import "math"

// Float64ToHalf converts f to IEEE 754 binary16 bits, rounding to nearest even.
// Values too large become ±Inf; NaN stays a quiet NaN.
func Float64ToHalf(f float64) uint16 { return narrowFloat(f, 5, 10) }

// Float32ToHalf converts f to IEEE 754 binary16 bits, rounding to nearest even.
func Float32ToHalf(f float32) uint16 { return narrowFloat(float64(f), 5, 10) }

// HalfToFloat32 converts IEEE 754 binary16 bits to a float32 (exactly).
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: man × 2^-24, which is a normal float32.
	f := float32(man) * (1.0 / (1 << 24))
	if sign != 0 {
		f = -f
	}
	return f
}

// Float64ToBFloat16 converts f to bfloat16 bits, rounding to nearest even.
func Float64ToBFloat16(f float64) uint16 { return narrowFloat(f, 8, 7) }

// Float32ToBFloat16 converts f to bfloat16 bits, rounding to nearest even.
func Float32ToBFloat16(f float32) uint16 { return narrowFloat(float64(f), 8, 7) }

// BFloat16ToFloat32 converts bfloat16 bits to a float32 (exactly).
func BFloat16ToFloat32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// narrowFloat rounds f directly from float64 (no double rounding through float32)
// to a 16-bit binary format with expBits exponent and manBits mantissa bits.
func narrowFloat(f float64, expBits, manBits uint) uint16 {
	bias := 1<<(expBits-1) - 1
	maxExp := uint16(1)<<expBits - 1
	b := math.Float64bits(f)
	sign := uint16(b>>63) << (expBits + manBits)
	exp := int(b>>52) & 0x7ff
	man := b & (1<<52 - 1)
	if exp == 0x7ff {
		if man != 0 {
			return sign | maxExp<<manBits | 1<<(manBits-1) // quiet NaN
		}
		return sign | maxExp<<manBits
	}
	if exp == 0 {
		return sign // float64 subnormals are far below either format's range
	}
	e := exp - 1023
	var (
		shift uint
		hexp  uint16
		full  uint64
	)
	if e >= 1-bias { // normal in the target format
		if e > bias {
			return sign | maxExp<<manBits
		}
		shift, hexp, full = 52-manBits, uint16(e+bias), man
	} else { // subnormal: count units of 2^(1-bias-manBits)
		s := 53 - e - bias - int(manBits)
		if s > 53 {
			return sign // below half the smallest subnormal
		}
		shift, full = uint(s), man|1<<52
	}
	m := full >> shift
	rem := full & (1<<shift - 1)
	halfway := uint64(1) << (shift - 1)
	if rem > halfway || (rem == halfway && m&1 == 1) {
		m++
	}
	// A carry out of the mantissa correctly bumps the exponent (up to Inf).
	return sign | (hexp<<manBits + uint16(m))
}
