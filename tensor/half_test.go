package tensor

import (
	"math"
	"testing"
)

func TestHalfConversions(t *testing.T) {
	tests := []struct {
		f    float32
		half uint16
		bf16 uint16
	}{
		{0, 0x0000, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000, 0x8000},
		{1, 0x3c00, 0x3f80},
		{-2, 0xc000, 0xc000},
		{0.1, 0x2e66, 0x3dcd},
		{1.0 / 3, 0x3555, 0x3eab},
		{65504, 0x7bff, 0x4780},
		{65519, 0x7bff, 0x4780},        // just under the half overflow threshold
		{65520, 0x7c00, 0x4780},        // rounds up to +Inf in half
		{1 + 1.0/2048, 0x3c00, 0x3f80}, // tie → even (half)
		{1 + 3.0/2048, 0x3c02, 0x3f80},
		{1 + 1.0/256, 0x3c04, 0x3f80}, // tie → even (bf16)
		{1 + 3.0/256, 0x3c0c, 0x3f82},
		{0x1p-14, 0x0400, 0x3880}, // smallest normal half
		{0x1p-24, 0x0001, 0x3380}, // smallest subnormal half
		{0x1p-25, 0x0000, 0x3300}, // tie with zero → even
		{0x3p-26, 0x0001, 0x3340}, // 0.75 ulp rounds up
		{math.MaxFloat32, 0x7c00, 0x7f80},
		{float32(math.Inf(-1)), 0xfc00, 0xff80},
		{0x1p-133, 0x0000, 0x0001}, // bf16 subnormal
	}
	for _, tt := range tests {
		if got := Float32ToHalf(tt.f); got != tt.half {
			t.Errorf("Float32ToHalf(%g) = %#04x, want %#04x", tt.f, got, tt.half)
		}
		if got := Float32ToBFloat16(tt.f); got != tt.bf16 {
			t.Errorf("Float32ToBFloat16(%g) = %#04x, want %#04x", tt.f, got, tt.bf16)
		}
	}
	if h := Float32ToHalf(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("half NaN = %#04x", h)
	}
	if b := Float32ToBFloat16(float32(math.NaN())); b&0x7f80 != 0x7f80 || b&0x7f == 0 {
		t.Errorf("bf16 NaN = %#04x", b)
	}
	// Every 16-bit pattern survives the trip through float32 (NaNs stay NaN).
	for i := range 1 << 16 {
		h := uint16(i)
		f := HalfToFloat32(h)
		if back := Float32ToHalf(f); back != h && !(f != f && back&0x7c00 == 0x7c00 && back&0x3ff != 0) {
			t.Fatalf("half %#04x → %g → %#04x", h, f, back)
		}
		f = BFloat16ToFloat32(h)
		if back := Float32ToBFloat16(f); back != h && !(f != f && back&0x7f80 == 0x7f80 && back&0x7f != 0) {
			t.Fatalf("bf16 %#04x → %g → %#04x", h, f, back)
		}
	}
}

// TestHalfToFloat32Values: known binary16 values, subnormals, infinities and NaN.
func TestHalfToFloat32Values(t *testing.T) {
	for bits, want := range map[uint16]float64{
		0x0000: 0, 0x3c00: 1, 0xc000: -2, 0x3555: 0.333251953125, 0x7bff: 65504,
		0x0400: math.Ldexp(1, -14), 0x03ff: math.Ldexp(1023, -24), 0x7c00: math.Inf(1), 0xfc00: math.Inf(-1),
	} {
		if got := float64(HalfToFloat32(bits)); got != want {
			t.Errorf("half %#04x = %v, want %v", bits, got, want)
		}
	}
	if f := HalfToFloat32(0x7e00); f == f {
		t.Error("0x7e00 is not NaN")
	}
}
