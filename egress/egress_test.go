package egress

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheck(t *testing.T) {
	none := New()
	loop := New(Loopback...)
	ten := New(netip.MustParsePrefix("10.0.0.0/8"))
	mappedTen := New(netip.MustParsePrefix("::ffff:10.0.0.0/104"))
	linkLocal := New(netip.MustParsePrefix("fe80::/10"))
	all := New(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
	for _, tc := range []struct {
		addr   string
		policy *Policy
		range_ string // "": allowed
	}{
		// Public addresses are always allowed.
		{"8.8.8.8", none, ""},
		{"1.1.1.1", nil, ""},
		{"172.32.0.1", none, ""},  // just above 172.16.0.0/12
		{"100.128.0.1", none, ""}, // just above 100.64.0.0/10
		{"2606:4700:4700::1111", none, ""},
		{"::ffff:8.8.8.8", none, ""},         // mapped public
		{"64:ff9b::808:808", none, ""},       // NAT64 of 8.8.8.8
		{"2002:808:808::1", none, ""},        // 6to4 of 8.8.8.8
		{"2a00:1450:4001::1%eth0", none, ""}, // a zone changes nothing

		// Special-purpose IPv4.
		{"127.0.0.1", none, "loopback"},
		{"127.255.255.254", none, "loopback"},
		{"0.0.0.0", none, "unspecified"},
		{"10.1.2.3", none, "private (10.0.0.0/8)"},
		{"172.16.0.1", none, "private (172.16.0.0/12)"},
		{"172.31.255.255", none, "private (172.16.0.0/12)"},
		{"192.168.1.1", none, "private (192.168.0.0/16)"},
		{"100.64.0.1", none, "CGNAT"},
		{"169.254.169.254", none, "link-local"}, // cloud metadata
		{"192.0.0.8", none, "IETF protocol assignments"},
		{"192.0.2.1", none, "documentation"},
		{"198.51.100.7", none, "documentation"},
		{"203.0.113.9", none, "documentation"},
		{"198.18.0.1", none, "benchmarking"},
		{"192.88.99.1", none, "6to4 relay"},
		{"224.0.0.1", none, "multicast"},
		{"239.255.255.250", none, "multicast"},
		{"240.0.0.1", none, "reserved"},
		{"255.255.255.255", none, "broadcast"},

		// Special-purpose IPv6.
		{"::1", none, "loopback (::1)"},
		{"::", none, "unspecified (::)"},
		{"fe80::1", none, "link-local (fe80::/10)"},
		{"fe80::1%eth0", none, "link-local (fe80::/10)"},
		{"fc00::1", none, "unique local"},
		{"fd12:3456::1", none, "unique local"},
		{"fec0::1", none, "site-local"},
		{"ff02::1", none, "multicast"},
		{"2001:db8::1", none, "documentation"},
		{"3fff::1", none, "documentation"},
		{"2001::1", none, "Teredo"},
		{"2001:2::1", none, "benchmarking"},
		{"100::1", none, "discard-only"},
		{"64:ff9b:1::1", none, "local-use NAT64"},
		{"5f00::1", none, "SRv6"},
		{"4000::1", none, "reserved IPv6 space"},

		// IPv4 inside IPv6 is judged by the IPv4 address it reaches.
		{"::ffff:127.0.0.1", none, "loopback (127.0.0.0/8)"},
		{"::ffff:10.0.0.1", none, "private (10.0.0.0/8)"},
		{"::ffff:169.254.169.254", none, "link-local"},
		{"64:ff9b::7f00:1", none, "NAT64 (64:ff9b::/96) embedding 127.0.0.1"},
		{"64:ff9b::a9fe:a9fe", none, "embedding 169.254.169.254"},
		{"2002:7f00:1::1", none, "6to4 (2002::/16) embedding 127.0.0.1"},
		{"2002:c0a8:101::1", none, "embedding 192.168.1.1"},
		{"::127.0.0.1", none, "IPv4-compatible"},

		// Allow lists open exactly their ranges.
		{"127.0.0.1", loop, ""},
		{"127.9.9.9", loop, ""},
		{"::1", loop, ""},
		{"::ffff:127.0.0.1", loop, ""},
		{"64:ff9b::7f00:1", loop, ""},
		{"2002:7f00:1::1", loop, ""},
		{"10.0.0.1", loop, "private"},
		{"0.0.0.0", loop, "unspecified"},
		{"10.200.0.1", ten, ""},
		{"::ffff:10.200.0.1", ten, ""},
		{"192.168.1.1", ten, "private (192.168.0.0/16)"},
		{"127.0.0.1", ten, "loopback"},
		{"10.200.0.1", mappedTen, ""}, // ::ffff:10.0.0.0/104 is 10.0.0.0/8
		{"fe80::1%eth0", linkLocal, ""},
		{"fe80::1", linkLocal, ""},
		{"169.254.0.1", linkLocal, "link-local (169.254.0.0/16)"},
		{"127.0.0.1", all, ""},
		{"fd00::1", all, ""},

		// Not an address at all.
		{"", none, "not an IP address"},
	} {
		name := tc.addr + " " + tc.policy.String()
		t.Run(name, func(t *testing.T) {
			var a netip.Addr
			if tc.addr != "" {
				a = netip.MustParseAddr(tc.addr)
			}
			err := tc.policy.Check(a)
			if tc.range_ == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want allowed", tc.addr, err)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) || !errors.Is(err, ErrRefused) {
				t.Fatalf("Check(%s) = %v, want a RefusedError", tc.addr, err)
			}
			if !strings.Contains(re.Range, tc.range_) {
				t.Errorf("Check(%s) range %q, want it to name %q", tc.addr, re.Range, tc.range_)
			}
		})
	}
}

func TestParseAllow(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    string // prefixes joined by ","
		wantErr string
	}{
		{in: nil, want: ""},
		{in: []string{""}, want: ""},
		{in: []string{"none"}, want: ""},
		{in: []string{"NONE"}, want: ""},
		{in: []string{"10.0.0.0/8"}, want: "10.0.0.0/8"},
		{in: []string{"10.0.0.0/8, fd00::/8"}, want: "10.0.0.0/8,fd00::/8"},
		{in: []string{"10.0.0.0/8", "192.168.0.0/16,127.0.0.1"}, want: "10.0.0.0/8,192.168.0.0/16,127.0.0.1/32"},
		{in: []string{"::1"}, want: "::1/128"},
		{in: []string{"10.1.2.3/8"}, want: "10.0.0.0/8"}, // masked
		{in: []string{"::ffff:192.168.0.0/112"}, want: "192.168.0.0/16"},
		{in: []string{"::ffff:127.0.0.1"}, want: "127.0.0.1/32"},
		{in: []string{"10.0.0.0/33"}, wantErr: `"10.0.0.0/33" is not a CIDR range`},
		{in: []string{"fe80::1%eth0"}, wantErr: `"fe80::1%eth0" is not a CIDR range`},
		{in: []string{"localhost"}, wantErr: `"localhost" is not a CIDR range`},
		{in: []string{"none,10.0.0.0/8"}, wantErr: `"none" is not a CIDR range`},
		{in: []string{"x,y"}, wantErr: `"x" is not a CIDR range (e.g. 10.0.0.0/8, fd00::/8) or an IP address` + "\n" + `"y" is not`},
	} {
		t.Run(strings.Join(tc.in, "|"), func(t *testing.T) {
			got, err := ParseAllow(tc.in...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseAllow(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAllow(%q): %v", tc.in, err)
			}
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			if strings.Join(s, ",") != tc.want {
				t.Errorf("ParseAllow(%q) = %v, want %s", tc.in, s, tc.want)
			}
		})
	}
}

// countingServer is a real https server on 127.0.0.1 that counts the
// connections it accepted.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// get fetches url with a client built by p, trusting srv's certificate (for
// the name example.com when serverName is set: the test certificate's name).
func get(t *testing.T, p *Policy, srv *httptest.Server, url, serverName string) error {
	t.Helper()
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.ServerName = serverName
	c := p.Client(cfg)
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "hello" {
		t.Fatalf("body %q", b)
	}
	return nil
}

// TestDialRefusedBeforeConnecting: a real https server on 127.0.0.1 is refused
// at dial time, by address and through a name that resolves to it, and no
// connection reaches it; listing loopback opens it.
func TestDialRefusedBeforeConnecting(t *testing.T) {
	srv, conns := countingServer(t)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	byName := "https://localhost:" + port + "/" // /etc/hosts: 127.0.0.1 (and ::1)

	for _, tc := range []struct {
		name, url, serverName string
	}{
		{"by address", srv.URL + "/", ""},
		{"by name", byName, "example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := conns.Load()
			err := get(t, New(), srv, tc.url, tc.serverName)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("GET %s = %v, want refused by egress", tc.url, err)
			}
			if n := conns.Load() - before; n != 0 {
				t.Errorf("the server accepted %d connections; the dial should have been refused first", n)
			}
			if err := get(t, New(Loopback...), srv, tc.url, tc.serverName); err != nil {
				t.Fatalf("GET %s with loopback allowed: %v", tc.url, err)
			}
			if n := conns.Load() - before; n == 0 {
				t.Error("the allowed request never connected")
			}
		})
	}
}

// TestEnvironmentProxyIgnored: a proxy named in the environment would be
// dialled instead of the target, so clients built here never use one.
func TestEnvironmentProxyIgnored(t *testing.T) {
	var proxied atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer proxy.Close()
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("https_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	srv, _ := countingServer(t)
	if tr := New().Transport(nil); tr.Proxy != nil {
		t.Fatal("the transport has a proxy func")
	}
	if err := get(t, New(), srv, srv.URL+"/", ""); !errors.Is(err, ErrRefused) {
		t.Fatalf("GET = %v, want refused", err)
	}
	if proxied.Load() != 0 {
		t.Error("the request went to the environment's proxy")
	}
}

func TestDialerKeepsCallersControl(t *testing.T) {
	called := 0
	d := New(Loopback...).Dialer(net.Dialer{Control: func(string, string, syscall.RawConn) error {
		called++
		return errors.New("caller says no")
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := d.DialContext(context.Background(), "tcp", ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "caller says no") || called != 1 {
		t.Fatalf("dial = %v, caller's control ran %d times", err, called)
	}
	// And ours runs first: a refused address never reaches the caller's.
	called = 0
	d = New().Dialer(net.Dialer{Control: func(string, string, syscall.RawConn) error { called++; return nil }})
	if _, err := d.DialContext(context.Background(), "tcp", ln.Addr().String()); !errors.Is(err, ErrRefused) || called != 0 {
		t.Fatalf("dial = %v, caller's control ran %d times", err, called)
	}
}

// TestClientSendsNoReferer: a client built here follows a redirect without a
// Referer, so the URL it was given (a presigned URL's query is a credential)
// does not reach the redirect target; http.Client sets one by default.
func TestClientSendsNoReferer(t *testing.T) {
	var referer atomic.Value
	target := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		referer.Store(r.Header.Get("Referer"))
		io.WriteString(w, "hello")
	}))
	defer target.Close()
	redirector := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/", http.StatusFound)
	}))
	defer redirector.Close()
	// httptest gives both servers one certificate.
	if err := get(t, New(Loopback...), redirector, redirector.URL+"/?X-Amz-Signature=secret", ""); err != nil {
		t.Fatal(err)
	}
	if got, ok := referer.Load().(string); !ok || got != "" {
		t.Errorf("the redirect target got Referer %q, want none", got)
	}
}
