package analysis

import (
	"fmt"
	"math"
)

// Z returns the two-sided standard normal quantile for confidence c in
// (0, 1): the z with P(|N(0,1)| ≤ z) = c (0.95 → 1.959963984540054).
func Z(confidence float64) (float64, error) {
	z, err := zOf(confidence)
	if err != nil {
		return 0, fmt.Errorf("analysis: Z: %w", err)
	}
	return z, nil
}

func zOf(confidence float64) (float64, error) {
	if err := checkConfidence(confidence); err != nil {
		return 0, err
	}
	// Work in the lower tail: for c near 1, 1−c is exact (Sterbenz) where
	// 1−(1−c)/2 would round the tail area away.
	return -normalQuantile((1 - confidence) / 2), nil
}

// normalQuantile is Φ⁻¹(p) for p in (0, 1): Wichura's algorithm AS 241
// (PPND16, Applied Statistics 37(3), 1988), relative error about 1e-16.
// Three rational approximations: one for the centre (|p−½| ≤ 0.425), two for
// the tails in r = √(−ln min(p, 1−p)) split at r = 5 (p ≈ 1.4e-11).
func normalQuantile(p float64) float64 {
	// The coefficients as published; a transcription slip would show in the
	// tests, which compare every branch with math.Erfinv.
	const (
		a0, a1, a2, a3 = 3.3871328727963666080e0, 1.3314166789178437745e+2, 1.9715909503065514427e+3, 1.3731693765509461125e+4
		a4, a5, a6, a7 = 4.5921953931549871457e+4, 6.7265770927008700853e+4, 3.3430575583588128105e+4, 2.5090809287301226727e+3
		b1, b2, b3, b4 = 4.2313330701600911252e+1, 6.8718700749205790830e+2, 5.3941960214247511077e+3, 2.1213794301586595867e+4
		b5, b6, b7     = 3.9307895800092710610e+4, 2.8729085735721942674e+4, 5.2264952788528545610e+3

		c0, c1, c2, c3 = 1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0, 3.64784832476320460504e0
		c4, c5, c6, c7 = 1.27045825245236838258e0, 2.41780725177450611770e-1, 2.27238449892691845833e-2, 7.74545014278341407640e-4
		d1, d2, d3, d4 = 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1, 1.48103976427480074590e-1
		d5, d6, d7     = 1.51986665636164571966e-2, 5.47593808499534494600e-4, 1.05075007164441684324e-9

		e0, e1, e2, e3 = 6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0, 2.96560571828504891230e-1
		e4, e5, e6, e7 = 2.65321895265761230930e-2, 1.24266094738807843860e-3, 2.71155556874348757815e-5, 2.01033439929228813265e-7
		f1, f2, f3, f4 = 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2, 7.86869131145613259100e-4
		f5, f6, f7     = 1.84631831751005468180e-5, 1.42151175831644588870e-7, 2.04426310338993978564e-15
	)

	q := p - 0.5
	if math.Abs(q) <= 0.425 {
		r := 0.180625 - q*q
		return q * (((((((a7*r+a6)*r+a5)*r+a4)*r+a3)*r+a2)*r+a1)*r + a0) /
			(((((((b7*r+b6)*r+b5)*r+b4)*r+b3)*r+b2)*r+b1)*r + 1)
	}
	r := p
	if q > 0 {
		r = 1 - p
	}
	r = math.Sqrt(-math.Log(r))
	var x float64
	if r <= 5 {
		r -= 1.6
		x = (((((((c7*r+c6)*r+c5)*r+c4)*r+c3)*r+c2)*r+c1)*r + c0) /
			(((((((d7*r+d6)*r+d5)*r+d4)*r+d3)*r+d2)*r+d1)*r + 1)
	} else {
		r -= 5
		x = (((((((e7*r+e6)*r+e5)*r+e4)*r+e3)*r+e2)*r+e1)*r + e0) /
			(((((((f7*r+f6)*r+f5)*r+f4)*r+f3)*r+f2)*r+f1)*r + 1)
	}
	if q < 0 {
		return -x
	}
	return x
}
