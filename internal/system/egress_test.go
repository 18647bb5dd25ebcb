package system

import (
	"net"
	"net/netip"
	"testing"
)

// TestEgressPolicyDefault: unset, loopback may be reached while every
// listener is on loopback (a laptop) and nothing special otherwise; a
// configured list, even an empty one, replaces the default.
func TestEgressPolicyDefault(t *testing.T) {
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	loop4, loop6 := tcp("127.0.0.1:8080"), tcp("[::1]:8081")
	any4, any6, lan := tcp("0.0.0.0:8080"), tcp("[::]:8081"), tcp("192.168.1.10:8081")
	for _, tc := range []struct {
		name     string
		allow    []string
		addrs    []net.Addr
		loopback bool // 127.0.0.1 and ::1 reachable
		ten      bool // 10.0.0.1 reachable
	}{
		{"laptop", nil, []net.Addr{loop4, tcp("127.0.0.1:8081")}, true, false},
		{"loopback v4 and v6", nil, []net.Addr{loop4, loop6}, true, false},
		{"one listener exposed", nil, []net.Addr{loop4, any6}, false, false},
		{"all interfaces", nil, []net.Addr{any4}, false, false},
		{"a LAN address", nil, []net.Addr{lan}, false, false},
		{"no listeners", nil, nil, false, false},
		{"configured", []string{"10.0.0.0/8"}, []net.Addr{loop4}, false, true},
		{"configured empty", []string{}, []net.Addr{loop4}, false, false},
		{"configured none", []string{"none"}, []net.Addr{loop4}, false, false},
		{"configured exposed", []string{"127.0.0.0/8", "::1"}, []net.Addr{any4}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := EgressPolicy(tc.allow, tc.addrs)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				addr string
				want bool
			}{{"127.0.0.1", tc.loopback}, {"::1", tc.loopback}, {"10.0.0.1", tc.ten}, {"8.8.8.8", true}, {"169.254.169.254", false}} {
				if got := p.Check(netip.MustParseAddr(c.addr)) == nil; got != c.want {
					t.Errorf("%s reachable = %v, want %v (rule: %s)", c.addr, got, c.want, p)
				}
			}
		})
	}
	if _, err := EgressPolicy([]string{"10.0.0.0/99"}, nil); err == nil {
		t.Error("a bad range was accepted")
	}
}
