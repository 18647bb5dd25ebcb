package egress

import (
	"net/netip"
)

// special is one special-purpose range (RFC 6890 and the IANA registries).
type special struct {
	prefix netip.Prefix
	name   string
	// embeds, when set, returns the IPv4 address a NAT64 or 6to4 address
	// reaches; the address is then judged by that.
	embeds func(netip.Addr) netip.Addr
}

// specials are checked in order; the more specific ranges come first, so an
// address is named by its most specific range.
var specials = []special{
	// IPv4.
	{prefix: pfx("0.0.0.0/8"), name: `"this network" (0.0.0.0/8, unspecified)`},
	{prefix: pfx("10.0.0.0/8"), name: "private (10.0.0.0/8)"},
	{prefix: pfx("100.64.0.0/10"), name: "shared address space, CGNAT (100.64.0.0/10)"},
	{prefix: pfx("127.0.0.0/8"), name: "loopback (127.0.0.0/8)"},
	{prefix: pfx("169.254.0.0/16"), name: "link-local (169.254.0.0/16)"},
	{prefix: pfx("172.16.0.0/12"), name: "private (172.16.0.0/12)"},
	{prefix: pfx("192.0.0.0/24"), name: "IETF protocol assignments (192.0.0.0/24)"},
	{prefix: pfx("192.0.2.0/24"), name: "documentation (192.0.2.0/24)"},
	{prefix: pfx("192.88.99.0/24"), name: "6to4 relay anycast (192.88.99.0/24)"},
	{prefix: pfx("192.168.0.0/16"), name: "private (192.168.0.0/16)"},
	{prefix: pfx("198.18.0.0/15"), name: "benchmarking (198.18.0.0/15)"},
	{prefix: pfx("198.51.100.0/24"), name: "documentation (198.51.100.0/24)"},
	{prefix: pfx("203.0.113.0/24"), name: "documentation (203.0.113.0/24)"},
	{prefix: pfx("224.0.0.0/4"), name: "multicast (224.0.0.0/4)"},
	{prefix: pfx("240.0.0.0/4"), name: "reserved or broadcast (240.0.0.0/4)"},

	// IPv6. (IPv4-mapped addresses never get here: Check unmaps them.)
	{prefix: pfx("::/128"), name: "unspecified (::)"},
	{prefix: pfx("::1/128"), name: "loopback (::1)"},
	{prefix: pfx("::/96"), name: "IPv4-compatible, deprecated (::/96)"},
	{prefix: pfx("64:ff9b::/96"), name: "NAT64 (64:ff9b::/96)", embeds: last32},
	{prefix: pfx("64:ff9b:1::/48"), name: "local-use NAT64 (64:ff9b:1::/48)"},
	{prefix: pfx("100::/64"), name: "discard-only (100::/64)"},
	{prefix: pfx("2001::/32"), name: "Teredo (2001::/32)"},
	{prefix: pfx("2001:2::/48"), name: "benchmarking (2001:2::/48)"},
	{prefix: pfx("2001:10::/28"), name: "ORCHID (2001:10::/28)"},
	{prefix: pfx("2001:20::/28"), name: "ORCHIDv2 (2001:20::/28)"},
	{prefix: pfx("2001:db8::/32"), name: "documentation (2001:db8::/32)"},
	{prefix: pfx("2002::/16"), name: "6to4 (2002::/16)", embeds: sixToFour},
	{prefix: pfx("3fff::/20"), name: "documentation (3fff::/20)"},
	{prefix: pfx("5f00::/16"), name: "SRv6 SIDs (5f00::/16)"},
	{prefix: pfx("fc00::/7"), name: "unique local, ULA (fc00::/7)"},
	{prefix: pfx("fe80::/10"), name: "link-local (fe80::/10)"},
	{prefix: pfx("fec0::/10"), name: "site-local, deprecated (fec0::/10)"},
	{prefix: pfx("ff00::/8"), name: "multicast (ff00::/8)"},
}

// globalUnicast is the only IPv6 space assigned for public use; anything
// outside it that no range above names is reserved.
var globalUnicast = pfx("2000::/3")

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// classify names the special-purpose range a (unmapped, no zone) is in; ok is
// false for a public address.
func classify(a netip.Addr) (special, bool) {
	for _, s := range specials {
		if s.prefix.Contains(a) {
			return s, true
		}
	}
	if a.Is6() && !globalUnicast.Contains(a) {
		return special{name: "reserved IPv6 space (outside 2000::/3)"}, true
	}
	return special{}, false
}

// last32 is the IPv4 address in the last 32 bits (NAT64, RFC 6052 /96).
func last32(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
}

// sixToFour is the IPv4 address in bits 16 to 48 (RFC 3056).
func sixToFour(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
}
