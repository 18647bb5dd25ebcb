package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWeb(t *testing.T) {
	served := 0
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served++; w.WriteHeader(200) })
	refuse := func(w http.ResponseWriter, _ *http.Request, status int, msg string) { http.Error(w, msg, status) }
	loop := Web(WebOptions{LoopbackOnly: true, AllowedHosts: []string{"nimbus.internal"},
		AllowedOrigins: []string{"https://ui.example.com"}, Refuse: refuse}, next)
	open := Web(WebOptions{Refuse: refuse}, next)
	tests := []struct {
		name   string
		h      http.Handler
		method string
		host   string
		hdr    map[string]string
		status int
		acao   string
	}{
		{"loopback host", loop, "GET", "127.0.0.1:8080", nil, 200, ""},
		{"localhost", loop, "GET", "localhost:8080", nil, 200, ""},
		{"ipv6 loopback", loop, "GET", "[::1]:8080", nil, 200, ""},
		{"listed host", loop, "GET", "nimbus.internal", nil, 200, ""},
		{"DNS rebinding: a foreign name for 127.0.0.1", loop, "POST", "evil.example:8080", nil, 403, ""},
		{"same origin", loop, "POST", "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:8080"}, 200, ""},
		{"cross-site page", loop, "POST", "127.0.0.1:8080", map[string]string{"Origin": "https://evil.example"}, 403, ""},
		{"null origin (sandboxed frame, file://)", loop, "POST", "127.0.0.1:8080", map[string]string{"Origin": "null"}, 403, ""},
		{"other port is another origin", loop, "POST", "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:9999"}, 403, ""},
		{"allowed origin", loop, "POST", "127.0.0.1:8080", map[string]string{"Origin": "https://ui.example.com"}, 200, "https://ui.example.com"},
		{"preflight of an allowed origin", loop, "OPTIONS", "127.0.0.1:8080",
			map[string]string{"Origin": "https://ui.example.com", "Access-Control-Request-Method": "DELETE"}, 204, "https://ui.example.com"},
		{"preflight of another origin", loop, "OPTIONS", "127.0.0.1:8080",
			map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"}, 403, ""},
		{"any host off loopback without a list", open, "GET", "nimbus.example.com", nil, 200, ""},
		{"cross-site off loopback too", open, "POST", "nimbus.example.com", map[string]string{"Origin": "https://evil.example"}, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := served
			req := httptest.NewRequest(tt.method, "/api/v1/gc", nil)
			req.Host = tt.host
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			tt.h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != tt.acao {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tt.acao)
			}
			if reached := served > before; reached != (tt.status == 200) {
				t.Errorf("handler reached = %v with status %d", reached, tt.status)
			}
		})
	}
}

func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:0": true, "localhost:8080": true, "127.1.2.3:1": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "10.0.0.1:80": false, "nimbus.example.com:80": false,
		"[::ffff:127.0.0.1]:80": true,
	} {
		if got := IsLoopbackAddr(addr); got != want {
			t.Errorf("IsLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
	if !LoopbackOnly("127.0.0.1:1", "") || LoopbackOnly("127.0.0.1:1", "0.0.0.0:2") {
		t.Error("LoopbackOnly")
	}
}
