package auth

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// WebOptions configure the protections against browsers: a page on another site
// must not be able to drive the server, whether by a cross-site request or by
// DNS rebinding (a hostname of the attacker's that resolves to 127.0.0.1).
type WebOptions struct {
	// AllowedOrigins may make cross-origin requests ("https://ui.example.com");
	// they alone get CORS headers. Same-origin requests need no entry.
	AllowedOrigins []string
	// AllowedHosts are Host header values (without port) the server answers
	// besides loopback names when LoopbackOnly. With LoopbackOnly false and no
	// AllowedHosts, any Host is answered.
	AllowedHosts []string
	// LoopbackOnly is set when the server listens on loopback only: then only
	// loopback Host names (localhost, 127.0.0.1, [::1]) and AllowedHosts are
	// answered, which is what defeats DNS rebinding.
	LoopbackOnly bool
	// Refuse writes a refusal (status, message) in the API's own error format.
	Refuse func(w http.ResponseWriter, r *http.Request, status int, msg string)
}

// Headers a browser page may send and read across origins (for allowed origins).
const (
	corsAllowHeaders  = "Authorization, Content-Type, Nimbus-Routing-Key, Nimbus-Change-Source, Inference-Header-Content-Length, Upload-Offset, Content-SHA256"
	corsExposeHeaders = "Nimbus-Target, Nimbus-Model-Version, Nimbus-Cold-Start, Retry-After, Inference-Header-Content-Length, Upload-Offset"
	corsAllowMethods  = "GET, POST, PUT, PATCH, DELETE"
)

// Web returns next behind the Host and Origin checks and CORS for allowed
// origins. Health checks are exempt from nothing: a load balancer sends a
// Host it was configured with, which the operator lists in AllowedHosts.
func Web(opts WebOptions, next http.Handler) http.Handler {
	origins := map[string]bool{}
	for _, o := range opts.AllowedOrigins {
		origins[strings.TrimRight(strings.ToLower(o), "/")] = true
	}
	hosts := map[string]bool{}
	for _, h := range opts.AllowedHosts {
		hosts[strings.ToLower(strings.Trim(h, "[]"))] = true
	}
	checkHost := opts.LoopbackOnly || len(hosts) > 0
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if checkHost {
			host := hostOnly(r.Host)
			if !hosts[host] && !(opts.LoopbackOnly && isLoopbackName(host)) {
				opts.Refuse(w, r, http.StatusForbidden, fmt.Sprintf(
					"host %q is not served here (a protection against DNS rebinding); list it with --allowed-hosts", r.Host))
				return
			}
		}
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		allowed := origins[strings.ToLower(origin)]
		if !allowed && !sameOrigin(origin, r) {
			opts.Refuse(w, r, http.StatusForbidden, fmt.Sprintf(
				"cross-origin request from %q refused; allow the origin with --cors-allowed-origins", origin))
			return
		}
		if allowed {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", corsAllowMethods)
				h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hostOnly is the Host header without port and brackets, lowercased.
func hostOnly(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.Trim(h, "[]"))
}

// isLoopbackName reports whether a Host names this machine's loopback:
// localhost (and *.localhost, which resolvers must map to loopback, RFC 6761)
// or a loopback IP.
func isLoopbackName(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// sameOrigin reports whether origin is the request's own scheme://host:port.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme && strings.EqualFold(u.Host, r.Host)
}

// IsLoopbackAddr reports whether a listen address ("127.0.0.1:8080",
// "[::1]:0", "localhost:8080") binds loopback only. "" and ":8080" bind every
// interface.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "" {
		return false
	}
	return isLoopbackName(strings.ToLower(host))
}

// LoopbackOnly reports whether every address is loopback (empty ones, such as a
// disabled gRPC listener, are skipped).
func LoopbackOnly(addrs ...string) bool {
	return !slices.ContainsFunc(addrs, func(a string) bool { return a != "" && !IsLoopbackAddr(a) })
}
