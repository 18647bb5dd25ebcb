package egress

import (
	"net/netip"
	"testing"
)

// FuzzParseAllow: any text parses to masked prefixes or an error, never a
// panic, and every parsed range is then allowed by the policy built from it.
func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"", "none", "10.0.0.0/8,fd00::/8", "::ffff:10.0.0.0/104", "127.0.0.1", "fe80::1%eth0", "1.2.3.4/40", " , ,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseAllow(s)
		if err != nil {
			return
		}
		p := New(ps...)
		for _, pr := range ps {
			if pr != pr.Masked() {
				t.Fatalf("%q: prefix %s not masked", s, pr)
			}
			if err := p.Check(pr.Addr()); err != nil {
				t.Fatalf("%q: %s refused by its own allow list: %v", s, pr.Addr(), err)
			}
		}
	})
}

// FuzzCheck: an IPv4 address and its IPv4-mapped IPv6 form get the same
// answer, and a zone never changes it.
func FuzzCheck(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, []byte{0xfe, 0x80, 15: 1})
	f.Add([]byte{8, 8, 8, 8}, []byte{0x20, 0x02, 0x7f, 0, 0, 1, 15: 0})
	f.Fuzz(func(t *testing.T, v4, v6 []byte) {
		p := New(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"))
		if len(v4) == 4 {
			a := netip.AddrFrom4([4]byte(v4))
			m := netip.AddrFrom16(a.As16())
			if (p.Check(a) == nil) != (p.Check(m) == nil) {
				t.Fatalf("%s and %s answered differently", a, m)
			}
		}
		if len(v6) == 16 {
			a := netip.AddrFrom16([16]byte(v6))
			if a.Is4In6() {
				return
			}
			if (p.Check(a) == nil) != (p.Check(a.WithZone("eth0")) == nil) {
				t.Fatalf("a zone changed the answer for %s", a)
			}
		}
	})
}
