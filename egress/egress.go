// Package egress is the rule for every connection Nimbus makes on a caller's
// behalf: artifact fetches now, git remotes, event brokers and remote runtimes
// later. Public addresses may be reached; loopback, private, link-local,
// unique-local, shared (CGNAT) and the other special-purpose ranges only where
// the operator allows them (--egress-allow). The rule is applied when a socket
// connects, to the address actually dialled after DNS (a net.Dialer Control
// func), so a name that resolves, or re-resolves, to an internal address cannot
// pass; IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4) are judged by the
// IPv4 address they reach.
//
// Clients built here never use a proxy from the environment (HTTPS_PROXY and
// friends): the dial would then go to the proxy, and the rule could no longer
// see where the request really goes.
package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrRefused matches (errors.Is) every *RefusedError.
var ErrRefused = errors.New("egress: address refused")

// RefusedError is a dial the rule refused. Its text names the address and the
// range, so it belongs in the server's log, not in an answer to the caller.
type RefusedError struct {
	Addr  netip.Addr
	Range string // "loopback", "private", … or "unparsable address"
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("egress: %s is %s, which this server may not reach (allow its range with --egress-allow)", e.Addr, e.Range)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Policy is one egress rule: the special-purpose ranges it allows. The zero
// Policy, and a nil *Policy, allow public addresses only. A Policy is
// immutable and safe for concurrent use.
type Policy struct {
	allow []netip.Prefix
}

// New returns the rule that allows public addresses and the given ranges.
// IPv4-mapped IPv6 prefixes (::ffff:10.0.0.0/104) are taken as the IPv4
// prefixes they map.
func New(allow ...netip.Prefix) *Policy {
	p := &Policy{}
	for _, pr := range allow {
		if pr.IsValid() {
			p.allow = append(p.allow, normalize(pr))
		}
	}
	return p
}

// Loopback is 127.0.0.0/8 and ::1/128: what a server listening only on
// loopback allows by default.
var Loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Allowed lists the ranges p allows besides public addresses.
func (p *Policy) Allowed() []netip.Prefix {
	if p == nil {
		return nil
	}
	return append([]netip.Prefix(nil), p.allow...)
}

// String describes p for logs: "public addresses" and any allowed ranges.
func (p *Policy) String() string {
	if p == nil || len(p.allow) == 0 {
		return "public addresses only"
	}
	s := make([]string, len(p.allow))
	for i, pr := range p.allow {
		s[i] = pr.String()
	}
	return "public addresses and " + strings.Join(s, ", ")
}

// Check returns nil when a connection to a may be made, else a *RefusedError.
// A zone is ignored; an IPv4-mapped address is judged as its IPv4 address, and
// a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address by the IPv4 address it
// embeds.
func (p *Policy) Check(a netip.Addr) error {
	if !a.IsValid() {
		return &RefusedError{Addr: a, Range: "not an IP address"}
	}
	a = a.WithZone("").Unmap()
	if p.allows(a) {
		return nil
	}
	r, ok := classify(a)
	if !ok {
		return nil // public
	}
	if r.embeds != nil {
		if v4 := r.embeds(a); p.Check(v4) != nil {
			return &RefusedError{Addr: a, Range: fmt.Sprintf("%s embedding %s", r.name, v4)}
		}
		return nil
	}
	return &RefusedError{Addr: a, Range: r.name}
}

func (p *Policy) allows(a netip.Addr) bool {
	if p == nil {
		return false
	}
	for _, pr := range p.allow {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// normalize maps an IPv4-mapped IPv6 prefix to its IPv4 prefix and masks it.
func normalize(pr netip.Prefix) netip.Prefix {
	if a := pr.Addr(); a.Is4In6() && pr.Bits() >= 96 {
		pr = netip.PrefixFrom(a.Unmap(), pr.Bits()-96)
	}
	return pr.Masked()
}

// ParseAllow reads an allow list as the operator writes it: CIDRs or single
// addresses, each entry possibly itself a comma-separated list
// ("10.0.0.0/8,fd00::/8"). "none" alone, or nothing, is the empty list.
// Errors name the entry.
func ParseAllow(entries ...string) ([]netip.Prefix, error) {
	var tokens []string
	for _, e := range entries {
		for _, s := range strings.Split(e, ",") {
			if s = strings.TrimSpace(s); s != "" {
				tokens = append(tokens, s)
			}
		}
	}
	if len(tokens) == 1 && strings.EqualFold(tokens[0], "none") {
		return nil, nil
	}
	var out []netip.Prefix
	var bad []error
	for _, s := range tokens {
		pr, err := parsePrefix(s)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, pr)
	}
	return out, errors.Join(bad...)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR range (e.g. 10.0.0.0/8, fd00::/8) or an IP address", s)
		}
		return normalize(pr), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR range (e.g. 10.0.0.0/8, fd00::/8) or an IP address", s)
	}
	return normalize(netip.PrefixFrom(a, a.BitLen())), nil
}
