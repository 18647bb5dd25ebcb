package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nimbus-ai/nimbus/auth"
)

// nopWriter is a ResponseWriter that costs nothing, so the benchmarks measure
// the middleware and not a recorder.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkAuth is what auth adds to one request (goal: ≤ 2 µs together):
// authenticate a cached token, apply its rate limit, and check a route's rule,
// through the HTTP middleware as the server runs it. Results in
// docs/BENCHMARKS.md.
//
//	go test -run '^$' -bench . -benchmem ./auth/
func BenchmarkAuth(b *testing.B) {
	a, _, _ := newAuthB(b)
	ctx := context.Background()
	_, admin := mustBootstrap(b, a)
	plain, err := a.Create(ctx, admin, auth.CreateRequest{Role: "invoker", Scopes: []string{"payments"}})
	if err != nil {
		b.Fatal(err)
	}
	limited, err := a.Create(ctx, admin, auth.CreateRequest{Role: "invoker", Scopes: []string{"payments"},
		RateLimit: &auth.Limit{RequestsPerSecond: 1e9, Burst: 1e9}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("authenticate", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.Authenticate(ctx, plain.Secret); err != nil {
				b.Fatal(err)
			}
		}
	})
	rule := auth.Needs(auth.PermInfer)
	handler := func(ok *bool) http.Handler {
		return auth.NewGuard(a).HTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			*ok = auth.Authorize(r.Context(), rule, "payments") == nil
		}))
	}
	for _, bc := range []struct{ name, tok string }{{"middleware", plain.Secret}, {"middleware+ratelimit", limited.Secret}} {
		b.Run(bc.name, func(b *testing.B) {
			var ok bool
			h := handler(&ok)
			req := httptest.NewRequest("POST", "/ns/payments/v2/models/m/infer", nil)
			req.Header.Set("Authorization", "Bearer "+bc.tok)
			w := &nopWriter{h: http.Header{}}
			for b.Loop() {
				h.ServeHTTP(w, req)
				if !ok {
					b.Fatal("refused")
				}
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				var ok bool
				h := handler(&ok)
				req := httptest.NewRequest("POST", "/ns/payments/v2/models/m/infer", nil)
				req.Header.Set("Authorization", "Bearer "+bc.tok)
				w := &nopWriter{h: http.Header{}}
				for pb.Next() {
					h.ServeHTTP(w, req)
					if !ok {
						b.Error("refused")
						return
					}
				}
			})
		})
	}
	b.Run("off", func(b *testing.B) {
		var ok bool
		h := auth.NewGuard(nil).HTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ok = auth.Authorize(r.Context(), rule, "payments") == nil
		}))
		req := httptest.NewRequest("POST", "/ns/payments/v2/models/m/infer", nil)
		w := &nopWriter{h: http.Header{}}
		for b.Loop() {
			h.ServeHTTP(w, req)
			if !ok {
				b.Fatal("refused")
			}
		}
	})
}
