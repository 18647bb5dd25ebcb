package egress

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Control is a net.Dialer Control func: it runs after DNS, just before each
// connect, on the address really dialled, and refuses what Check refuses.
// An address it cannot parse is refused.
func (p *Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Range: fmt.Sprintf("unparsable address %q", address)}
	}
	return p.Check(ap.Addr())
}

// Dialer returns a copy of d that applies p to every connection, after d's own
// Control func (if any) has run.
func (p *Policy) Dialer(d net.Dialer) *net.Dialer {
	prev := d.Control
	prevCtx := d.ControlContext
	d.ControlContext = nil
	d.Control = func(network, address string, c syscall.RawConn) error {
		if err := p.Control(network, address, c); err != nil {
			return err
		}
		if prev != nil {
			return prev(network, address, c)
		}
		return nil
	}
	if prevCtx != nil {
		// net.Dialer prefers ControlContext; keep the caller's and ours both.
		d.Control = nil
		d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
			if err := p.Control(network, address, c); err != nil {
				return err
			}
			return prevCtx(ctx, network, address, c)
		}
	}
	return &d
}

// DialContext dials as a default net.Dialer would (30 s connect timeout), with
// p applied.
func (p *Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return p.Dialer(net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext(ctx, network, address)
}

// Transport returns an HTTP transport whose every connection obeys p: no proxy
// (see the package doc), TLS configured by tlsConfig (nil: the system roots).
func (p *Policy) Transport(tlsConfig *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           p.DialContext,
		TLSClientConfig:       tlsConfig.Clone(),
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
	}
}

// maxRedirects is how many redirects a Client follows, as http.Client does
// by default.
const maxRedirects = 10

// Client returns an HTTP client over Transport(tlsConfig). It follows
// redirects without a Referer (see DropReferer).
func (p *Policy) Client(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: p.Transport(tlsConfig), CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		DropReferer(req)
		return nil
	}}
}

// DropReferer removes the Referer http.Client puts on a redirect it is about
// to follow: the URL redirected from, query included, which for a request
// made on a caller's behalf may carry a credential (a presigned URL's
// signature) that the redirect target, perhaps another host, must not see.
// A CheckRedirect calls it: the header is set before CheckRedirect runs.
func DropReferer(req *http.Request) { req.Header.Del("Referer") }
