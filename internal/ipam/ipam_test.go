package ipam

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func pfx(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(s)
}

func addr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		out = append(out, addr(s))
	}
	return out
}

func mustPool(t *testing.T, subnet, ipRange, gateway string) *Pool {
	t.Helper()
	p, err := NewPool(pfx(subnet), pfx(ipRange), addr(gateway))
	if err != nil {
		t.Fatalf("NewPool(%q, %q, %q): %v", subnet, ipRange, gateway, err)
	}
	return p
}

func TestAllocateOrder(t *testing.T) {
	tests := []struct {
		name                     string
		subnet, ipRange, gateway string
		reserve                  []string // static addresses taken first
		n                        int      // allocations to make
		want                     []string
	}{
		{
			name:   "walk-through macvlan1: first .2, next .3",
			subnet: "192.168.57.0/24", ipRange: "192.168.57.0/24", gateway: "192.168.57.1",
			n: 2, want: []string{"192.168.57.2", "192.168.57.3"},
		},
		{
			name:   "default bridge, gateway defaults to .1",
			subnet: "172.17.0.0/16",
			n:      3, want: []string{"172.17.0.2", "172.17.0.3", "172.17.0.4"},
		},
		{
			name:   "gateway elsewhere: .1 is handed out, the gateway is skipped",
			subnet: "10.1.0.0/29", gateway: "10.1.0.3",
			n: 5, want: []string{"10.1.0.1", "10.1.0.2", "10.1.0.4", "10.1.0.5", "10.1.0.6"},
		},
		{
			name:   "ip-range inside a larger subnet starts at the range's first address (as Docker)",
			subnet: "172.28.0.0/16", ipRange: "172.28.5.0/24",
			n: 2, want: []string{"172.28.5.0", "172.28.5.1"},
		},
		{
			name:   "ip-range at the top of the subnet stops before broadcast",
			subnet: "192.168.57.0/24", ipRange: "192.168.57.252/30",
			n: 3, want: []string{"192.168.57.252", "192.168.57.253", "192.168.57.254"},
		},
		{
			name:   "ip-range holding the gateway skips it",
			subnet: "10.9.0.0/24", ipRange: "10.9.0.0/29", gateway: "10.9.0.2",
			n: 3, want: []string{"10.9.0.1", "10.9.0.3", "10.9.0.4"},
		},
		{
			name:   "reserved addresses are skipped",
			subnet: "172.18.0.0/16", reserve: []string{"172.18.0.2", "172.18.0.4", "172.18.0.5"},
			n: 3, want: []string{"172.18.0.3", "172.18.0.6", "172.18.0.7"},
		},
		{
			name:   "static address outside the ip-range does not move the range",
			subnet: "172.28.0.0/16", ipRange: "172.28.5.0/24", reserve: []string{"172.28.9.9"},
			n: 1, want: []string{"172.28.5.0"},
		},
		{
			name:   "crossing an octet",
			subnet: "172.19.0.0/16", ipRange: "172.19.0.252/30",
			reserve: []string{"172.19.0.252", "172.19.0.253"},
			n:       2, want: []string{"172.19.0.254", "172.19.0.255"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPool(t, tt.subnet, tt.ipRange, tt.gateway)
			for _, r := range tt.reserve {
				if err := p.Reserve(addr(r)); err != nil {
					t.Fatalf("Reserve(%s): %v", r, err)
				}
			}
			var got []string
			for range tt.n {
				a, err := p.Allocate()
				if err != nil {
					t.Fatalf("Allocate after %v: %v", got, err)
				}
				got = append(got, a.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("allocated %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReleaseThenReuseLowest(t *testing.T) {
	p := mustPool(t, "172.17.0.0/16", "", "")
	for range 5 {
		if _, err := p.Allocate(); err != nil { // .2 .. .6
			t.Fatal(err)
		}
	}
	p.Release(addr("172.17.0.5"))
	p.Release(addr("172.17.0.3"))
	p.Release(addr("172.17.0.3"))   // twice: no-op
	p.Release(addr("172.17.0.1"))   // gateway: no-op
	p.Release(addr("172.17.0.0"))   // network: no-op
	p.Release(addr("10.0.0.1"))     // outside: no-op
	p.Release(addr("172.17.0.200")) // never held: no-op
	if got, want := held(p), addrs("172.17.0.2", "172.17.0.4", "172.17.0.6"); !slices.Equal(got, want) {
		t.Fatalf("held = %v, want %v", got, want)
	}
	for _, want := range []string{"172.17.0.3", "172.17.0.5", "172.17.0.7"} {
		got, err := p.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		if got != addr(want) {
			t.Errorf("Allocate = %s, want %s", got, want)
		}
	}
	// The gateway can never be released into the pool.
	if a, _ := p.Allocate(); a == addr("172.17.0.1") {
		t.Fatal("gateway handed out after Release")
	}
}

func TestExhaustion(t *testing.T) {
	tests := []struct {
		name                     string
		subnet, ipRange, gateway string
		capacity                 int
		wantErr                  string
	}{
		{"/30 holds one member", "192.168.57.0/30", "", "", 1,
			"no free address in 192.168.57.0/30: remove a sandbox or widen --ip-range"},
		{"/29 holds five", "10.0.0.0/29", "", "", 5,
			"no free address in 10.0.0.0/29: remove a sandbox or widen --ip-range"},
		{"ip-range /30 inside /24", "192.168.57.0/24", "192.168.57.8/30", "", 4,
			"no free address in 192.168.57.8/30: remove a sandbox or widen --ip-range"},
		{"ip-range is only network+gateway", "192.168.57.0/24", "192.168.57.0/31", "", 0,
			"no free address in 192.168.57.0/31: remove a sandbox or widen --ip-range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPool(t, tt.subnet, tt.ipRange, tt.gateway)
			for i := range tt.capacity {
				if _, err := p.Allocate(); err != nil {
					t.Fatalf("allocation %d: %v", i+1, err)
				}
			}
			_, err := p.Allocate()
			if err == nil {
				t.Fatalf("allocation %d succeeded, want exhaustion", tt.capacity+1)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("err = %q, want %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrExhausted) {
				t.Errorf("errors.Is(err, ErrExhausted) = false")
			}
			// Releasing one makes room again.
			if in := held(p); len(in) > 0 {
				p.Release(in[0])
				if got, err := p.Allocate(); err != nil || got != in[0] {
					t.Errorf("after Release(%s): Allocate = %s, %v", in[0], got, err)
				}
			}
		})
	}
}

func TestReserve(t *testing.T) {
	tests := []struct {
		name    string
		ip      string
		wantErr string
		kind    error
	}{
		{"inside range", "172.18.0.10", "", nil},
		{"inside subnet, outside ip-range (allowed, as Docker)", "172.18.200.7", "", nil},
		{"last usable", "172.18.255.254", "", nil},
		{"held by the first reserve below", "172.18.0.5",
			"address 172.18.0.5 is already in use by another sandbox", ErrInUse},
		{"outside subnet", "10.0.0.5",
			"address 10.0.0.5 is outside subnet 172.18.0.0/16: pick an address inside the subnet", ErrInvalid},
		{"gateway", "172.18.0.1",
			"address 172.18.0.1 is the gateway of 172.18.0.0/16: pick another address", ErrInvalid},
		{"network address", "172.18.0.0",
			"address 172.18.0.0 is the network address of 172.18.0.0/16: pick another address", ErrInvalid},
		{"broadcast", "172.18.255.255",
			"address 172.18.255.255 is the broadcast address of 172.18.0.0/16: pick another address", ErrInvalid},
		{"IPv6", "fd00::5",
			"address fd00::5 is not IPv4: pass an IPv4 address inside 172.18.0.0/16", ErrInvalid},
		{"zero", "",
			"no address given: pass an address inside 172.18.0.0/16", ErrInvalid},
		{"4in6 is taken as IPv4", "::ffff:172.18.0.9", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPool(t, "172.18.0.0/16", "172.18.0.0/24", "")
			if err := p.Reserve(addr("172.18.0.5")); err != nil {
				t.Fatal(err)
			}
			err := p.Reserve(addr(tt.ip))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Reserve(%s): %v", tt.ip, err)
				}
				if !p.Contains(addr(tt.ip).Unmap()) {
					t.Errorf("Contains(%s) = false after Reserve", tt.ip)
				}
				if err := p.Reserve(addr(tt.ip)); !errors.Is(err, ErrInUse) {
					t.Errorf("second Reserve(%s) = %v, want ErrInUse", tt.ip, err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Reserve(%s) = %v, want %q", tt.ip, err, tt.wantErr)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("errors.Is(err, %v) = false", tt.kind)
			}
			if got, want := held(p), addrs("172.18.0.5"); !slices.Equal(got, want) {
				t.Errorf("failed Reserve changed what is held: %v", got)
			}
		})
	}
}

func TestNewPoolErrors(t *testing.T) {
	tests := []struct {
		name                     string
		subnet, ipRange, gateway string
		wantErr                  string
	}{
		{"no subnet", "", "", "",
			"no subnet given: pass a subnet such as 172.18.0.0/16"},
		{"IPv6 subnet", "fd00::/64", "", "",
			"subnet fd00::/64 is not IPv4: only IPv4 networks are supported for now"},
		{"4in6 subnet", "::ffff:10.0.0.0/104", "", "",
			"subnet ::ffff:10.0.0.0/104 is not IPv4: only IPv4 networks are supported for now"},
		{"too small", "10.0.0.0/31", "", "",
			"subnet 10.0.0.0/31 is too small: use a /30 or larger"},
		{"gateway outside", "192.168.57.0/24", "", "192.168.58.1",
			"gateway 192.168.58.1 is outside subnet 192.168.57.0/24: pick a gateway inside the subnet"},
		{"gateway IPv6", "192.168.57.0/24", "", "fd00::1",
			"gateway fd00::1 is outside subnet 192.168.57.0/24: pick a gateway inside the subnet"},
		{"gateway is network address", "192.168.57.0/24", "", "192.168.57.0",
			"gateway 192.168.57.0 is the network address of 192.168.57.0/24: pick another gateway, such as 192.168.57.1"},
		{"gateway is broadcast", "192.168.57.0/24", "", "192.168.57.255",
			"gateway 192.168.57.255 is the broadcast address of 192.168.57.0/24: pick another gateway, such as 192.168.57.1"},
		{"ip-range outside", "192.168.57.0/24", "192.168.58.0/25", "",
			"ip-range 192.168.58.0/25 is outside subnet 192.168.57.0/24: pick a range inside the subnet"},
		{"ip-range wider than subnet", "192.168.57.0/24", "192.168.0.0/16", "",
			"ip-range 192.168.0.0/16 is outside subnet 192.168.57.0/24: pick a range inside the subnet"},
		{"ip-range IPv6", "192.168.57.0/24", "fd00::/120", "",
			"ip-range fd00::/120 is not IPv4: only IPv4 networks are supported for now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPool(pfx(tt.subnet), pfx(tt.ipRange), addr(tt.gateway))
			if err == nil {
				t.Fatalf("NewPool succeeded (%v), want %q", p.Subnet(), tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("err = %q\nwant  %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false")
			}
		})
	}
}

func TestNewPoolNormalises(t *testing.T) {
	p := mustPool(t, "172.20.3.4/16", "172.20.7.9/24", "")
	if got, want := p.Subnet(), pfx("172.20.0.0/16"); got != want {
		t.Errorf("Subnet = %s, want %s", got, want)
	}
	if got, err := p.Allocate(); err != nil || !pfx("172.20.7.0/24").Contains(got) {
		t.Errorf("first Allocate = %s, %v; want an address of the ip-range 172.20.7.0/24", got, err)
	}
	if got, want := p.Gateway(), addr("172.20.0.1"); got != want {
		t.Errorf("Gateway = %s, want %s", got, want)
	}
	if got, err := mustPool(t, "10.0.0.0/8", "", "").Allocate(); err != nil || got != addr("10.0.0.2") {
		t.Errorf("Allocate without ip-range = %s, %v; want the subnet's 10.0.0.2", got, err)
	}
}

func TestFreshPoolHoldsNothing(t *testing.T) {
	p := mustPool(t, "192.168.57.0/24", "", "192.168.57.1")
	if got := held(p); len(got) != 0 {
		t.Fatalf("fresh pool holds %v, want nothing", got)
	}
	if p.Contains(addr("192.168.57.1")) {
		t.Error("Contains(gateway) = true")
	}
}

func TestMAC(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"172.17.0.2", "02:42:ac:11:00:02"},
		{"172.17.0.3", "02:42:ac:11:00:03"},
		{"192.168.57.2", "02:42:c0:a8:39:02"},
		{"192.168.57.3", "02:42:c0:a8:39:03"},
		{"10.0.2.100", "02:42:0a:00:02:64"},
		{"255.255.255.254", "02:42:ff:ff:ff:fe"},
		{"::ffff:172.17.0.2", "02:42:ac:11:00:02"},
	}
	for _, tt := range tests {
		if got := MAC(addr(tt.ip)).String(); got != tt.want {
			t.Errorf("MAC(%s) = %s, want %s", tt.ip, got, tt.want)
		}
	}
	for _, ip := range []string{"fd00::2", ""} {
		if got := MAC(addr(ip)); got != nil {
			t.Errorf("MAC(%q) = %s, want nil", ip, got)
		}
	}
}

// TestSlash16 fills a whole /16 and drains it, checking order and that the
// pool stays cheap: no up-front tables, only what is held.
func TestSlash16(t *testing.T) {
	p := mustPool(t, "172.18.0.0/16", "", "")
	if c := cap(p.used); c > 16 {
		t.Fatalf("fresh /16 pool holds %d slots up front", c)
	}
	const capacity = 1<<16 - 3 // minus network, gateway, broadcast
	prev := uint32(0)
	for i := range capacity {
		a, err := p.Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
		u := toU32(a)
		if u <= prev || a == addr("172.18.0.1") {
			t.Fatalf("allocation %d = %s, not ascending or the gateway", i+1, a)
		}
		prev = u
	}
	if _, err := p.Allocate(); !errors.Is(err, ErrExhausted) {
		t.Fatalf("allocation past capacity: %v, want ErrExhausted", err)
	}
	if got := len(held(p)); got != capacity {
		t.Fatalf("%d addresses held, want %d", got, capacity)
	}
	// Release a scattered set, then the pool gives them back lowest first.
	rng := rand.New(rand.NewPCG(1, 2))
	in := held(p)
	var freed []netip.Addr
	for range 500 {
		a := in[rng.IntN(len(in))]
		if !slices.Contains(freed, a) {
			freed = append(freed, a)
			p.Release(a)
		}
	}
	slices.SortFunc(freed, netip.Addr.Compare)
	for _, want := range freed {
		got, err := p.Allocate()
		if err != nil || got != want {
			t.Fatalf("Allocate = %s, %v; want %s", got, err, want)
		}
	}
}

// TestAllocateMatchesNaive checks the binary-search allocator against a
// plain scan over random reserve/allocate/release sequences.
func TestAllocateMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for round := range 200 {
		p := mustPool(t, "10.20.0.0/26", "10.20.0.8/29", "10.20.0.10")
		held := map[uint32]bool{}
		lo, hi := bounds(pfx("10.20.0.8/29"))
		for step := range 60 {
			switch rng.IntN(3) {
			case 0: // allocate
				want, ok := uint32(0), false
				for u := lo; u <= hi; u++ {
					if !held[u] && u != toU32(addr("10.20.0.10")) {
						want, ok = u, true
						break
					}
				}
				got, err := p.Allocate()
				if ok != (err == nil) || (ok && toU32(got) != want) {
					t.Fatalf("round %d step %d: Allocate = %s, %v; want %s (ok=%v)", round, step, got, err, fromU32(want), ok)
				}
				if ok {
					held[want] = true
				}
			case 1: // reserve anywhere in the subnet
				u := toU32(addr("10.20.0.1")) + uint32(rng.IntN(62))
				err := p.Reserve(fromU32(u))
				switch {
				case u == toU32(addr("10.20.0.10")):
					if !errors.Is(err, ErrInvalid) {
						t.Fatalf("Reserve(gateway) = %v", err)
					}
				case held[u]:
					if !errors.Is(err, ErrInUse) {
						t.Fatalf("Reserve(held %s) = %v", fromU32(u), err)
					}
				default:
					if err != nil {
						t.Fatalf("Reserve(%s) = %v", fromU32(u), err)
					}
					held[u] = true
				}
			case 2: // release
				u := toU32(addr("10.20.0.0")) + uint32(rng.IntN(64))
				p.Release(fromU32(u))
				delete(held, u)
			}
		}
	}
}

func BenchmarkAllocateSlash16(b *testing.B) {
	for b.Loop() {
		p, _ := NewPool(pfx("172.18.0.0/16"), netip.Prefix{}, netip.Addr{})
		for {
			if _, err := p.Allocate(); err != nil {
				break
			}
		}
	}
}

// held lists the addresses p holds, lowest first, through Contains.
func held(p *Pool) []netip.Addr {
	var out []netip.Addr
	sub := p.Subnet()
	for a := sub.Addr(); sub.Contains(a); a = a.Next() {
		if p.Contains(a) {
			out = append(out, a)
		}
	}
	return out
}

func TestSLAAC(t *testing.T) {
	mac := MAC(netip.MustParseAddr("10.0.2.100"))
	cases := map[string]string{
		"fd00::/64":          "fd00::42:aff:fe00:264",
		"fe80::/64":          "fe80::42:aff:fe00:264",
		"2001:db8:1:2::/64":  "2001:db8:1:2:42:aff:fe00:264",
		"2001:db8:1:2::9/64": "2001:db8:1:2:42:aff:fe00:264",
	}
	for prefix, want := range cases {
		if got := SLAAC(netip.MustParsePrefix(prefix), mac); got != netip.MustParseAddr(want) {
			t.Errorf("SLAAC(%s, %s) = %s; want %s (what Linux makes)", prefix, mac, got, want)
		}
	}
}
