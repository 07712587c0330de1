package stack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
)

func testGateway(hostLoopback bool) *Gateway {
	return &Gateway{cfg: Config{
		Subnet:       netip.MustParsePrefix("10.0.2.0/24"),
		Gateway:      netip.MustParseAddr("10.0.2.2"),
		Resolver:     netip.MustParseAddr("10.0.2.3"),
		HostLoopback: hostLoopback,
	}}
}

func testGateway6(hostLoopback bool) *Gateway {
	g := testGateway(hostLoopback)
	g.cfg.IPv6 = &IPv6Config{
		Subnet:   netip.MustParsePrefix("fd00::/64"),
		Gateway:  netip.MustParseAddr("fd00::2"),
		Resolver: netip.MustParseAddr("fd00::3"),
	}
	return g
}

// targetCase is a destination, whether host loopback is allowed, and
// where hostTarget should send it ("" = refused).
type targetCase struct {
	dst          string
	hostLoopback bool
	want         string
}

func checkTargets(t *testing.T, gateway func(hostLoopback bool) *Gateway, src string, cases []targetCase) {
	t.Helper()
	ap := netip.MustParseAddrPort
	for _, c := range cases {
		got, ok := gateway(c.hostLoopback).hostTarget(netip.MustParseAddr(src), ap(c.dst))
		if c.want == "" {
			if ok {
				t.Errorf("hostTarget(%s, loopback=%v) = %s; want refused", c.dst, c.hostLoopback, got)
			}
			continue
		}
		if !ok || got != ap(c.want) {
			t.Errorf("hostTarget(%s, loopback=%v) = %s, %v; want %s", c.dst, c.hostLoopback, got, ok, c.want)
		}
	}
}

func TestHostTarget(t *testing.T) {
	cases := []targetCase{
		{"198.51.100.2:80", false, "198.51.100.2:80"},
		{"10.0.2.2:8080", false, ""},
		{"10.0.2.2:8080", true, "127.0.0.1:8080"},
		{"10.0.2.50:80", true, ""},
		{"127.0.0.1:80", true, ""},
		{"0.0.0.0:80", false, ""},
		{"224.0.0.1:80", false, ""},
	}
	checkTargets(t, testGateway, "10.0.2.100", cases)
}

func TestHostTarget6(t *testing.T) {
	cases := []targetCase{
		{"[2001:db8::1]:80", false, "[2001:db8::1]:80"},
		{"[fd00::2]:8080", false, ""},
		{"[fd00::2]:8080", true, "[::1]:8080"},
		{"[fd00::3]:80", true, ""},
		{"[fd00::99]:80", true, ""},
		{"[::1]:80", true, ""},
		{"[::]:80", true, ""},
		{"[fe80::1]:80", true, ""},
		{"[ff02::1]:80", true, ""},
		{"[::ffff:127.0.0.1]:80", true, ""},
		{"[::ffff:198.51.100.2]:80", true, ""},
		{"198.51.100.2:80", false, "198.51.100.2:80"},
	}
	checkTargets(t, testGateway6, "fd00::1", cases)
	// Without IPv6 on the segment, no IPv6 destination is reached.
	if got, ok := testGateway(true).hostTarget(netip.MustParseAddr("10.0.2.100"), netip.MustParseAddrPort("[2001:db8::1]:80")); ok {
		t.Errorf("an IPv4-only segment reached %s", got)
	}
}

func TestHostLoopbackPerMember(t *testing.T) {
	g := testGateway(false)
	member, other := netip.MustParseAddr("10.0.2.5"), netip.MustParseAddr("10.0.2.6")
	g.AllowHostLoopback(member, true)
	dst := netip.MustParseAddrPort("10.0.2.2:8080")
	if got, ok := g.hostTarget(member, dst); !ok || got != netip.MustParseAddrPort("127.0.0.1:8080") {
		t.Errorf("allowed member: %s, %v", got, ok)
	}
	if _, ok := g.hostTarget(other, dst); ok {
		t.Errorf("another member reached the host loopback")
	}
	g.AllowHostLoopback(member, false)
	if _, ok := g.hostTarget(member, dst); ok {
		t.Errorf("withdrawn member still reaches the host loopback")
	}
}

func TestSource(t *testing.T) {
	g := testGateway(false)
	cases := map[string]string{
		"198.51.100.2":        "198.51.100.2",
		"::ffff:198.51.100.2": "198.51.100.2",
		"127.0.0.1":           "10.0.2.2",
		"::1":                 "10.0.2.2",
		"2001:db8::1":         "10.0.2.2",
		"10.0.2.100":          "10.0.2.2",
		"0.0.0.0":             "10.0.2.2",
	}
	member := netip.MustParseAddr("10.0.2.100")
	for client, want := range cases {
		if got := g.source(netip.MustParseAddr(client), member); got != netip.MustParseAddr(want) {
			t.Errorf("source(%s) = %s; want %s", client, got, want)
		}
	}
}

// TestSource6: to a member's IPv6 address an IPv6 client keeps its own
// address, where the member can answer it; the rest come from the
// gateway's IPv6 address.
func TestSource6(t *testing.T) {
	g := testGateway6(false)
	cases := map[string]string{
		"2001:db8::1":         "2001:db8::1",
		"::1":                 "fd00::2",
		"fe80::1":             "fd00::2",
		"fd00::99":            "fd00::2",
		"198.51.100.2":        "fd00::2",
		"::ffff:198.51.100.2": "fd00::2",
		"::":                  "fd00::2",
	}
	member := netip.MustParseAddr("fd00::64")
	for client, want := range cases {
		if got := g.source(netip.MustParseAddr(client), member); got != netip.MustParseAddr(want) {
			t.Errorf("source(%s) to %s = %s; want %s", client, member, got, want)
		}
	}
	// To the member's IPv4 address the IPv4 rules hold.
	if got := g.source(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("10.0.2.100")); got != netip.MustParseAddr("10.0.2.2") {
		t.Errorf("an IPv6 client to an IPv4 member: %s, want the gateway", got)
	}
}

// A v4-mapped destination from a member's IPv6 stack is refused as it
// arrives, not unmapped into an IPv4 host on the way to hostTarget.
func TestV4MappedDestinationStaysIPv6(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:198.51.100.2")
	dst := netipAddr(tcpip.AddrFrom16(mapped.As16()))
	if dst != mapped {
		t.Fatalf("netipAddr(%s) = %s; want it as sent", mapped, dst)
	}
	if got, ok := testGateway6(true).hostTarget(netip.MustParseAddr("fd00::100"), netip.AddrPortFrom(dst, 80)); ok {
		t.Errorf("a v4-mapped destination went to %s; want it refused", got)
	}
	if got := netipAddr(tcpip.AddrFrom4([4]byte{198, 51, 100, 2})); !got.Is4() {
		t.Errorf("an IPv4 address came back as %s; want it IPv4", got)
	}
}
