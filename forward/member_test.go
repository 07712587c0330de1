package forward

import (
	"net/netip"
	"testing"
)

// TestMemberAddrFor: IPv6 clients reach a dual-stack member over IPv6;
// IPv4 clients (also as v4-mapped addresses from a dual-stack listener)
// and every client of an IPv4-only member go over IPv4.
func TestMemberAddrFor(t *testing.T) {
	v4, v6 := netip.MustParseAddr("172.28.0.2"), netip.MustParseAddr("fd00:1::2")
	dual, only4 := Member{IP: v4, IP6: v6}, Member{IP: v4}
	for _, c := range []struct {
		m      Member
		client string
		want   netip.Addr
	}{
		{dual, "2001:db8::2", v6},
		{dual, "::1", v6},
		{dual, "198.51.100.2", v4},
		{dual, "::ffff:198.51.100.2", v4},
		{only4, "2001:db8::2", v4},
		{only4, "198.51.100.2", v4},
	} {
		if got := c.m.addrFor(netip.MustParseAddr(c.client)); got != c.want {
			t.Errorf("%+v.addrFor(%s) = %s; want %s", c.m, c.client, got, c.want)
		}
	}
}
