package ipam

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

func mustPool6(t *testing.T, subnet, gateway string) *Pool6 {
	t.Helper()
	p, err := NewPool6(pfx(subnet), addr(gateway))
	if err != nil {
		t.Fatalf("NewPool6(%q, %q): %v", subnet, gateway, err)
	}
	return p
}

// Docker's order: the gateway at ::1, members from ::2 upwards, the
// lowest free address again after a release.
func TestPool6Order(t *testing.T) {
	p := mustPool6(t, "fd00:db8:1::/64", "")
	if g := p.Gateway(); g != addr("fd00:db8:1::1") {
		t.Fatalf("gateway %s, want fd00:db8:1::1", g)
	}
	var got []netip.Addr
	for range 3 {
		a, err := p.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	want := addrs("fd00:db8:1::2", "fd00:db8:1::3", "fd00:db8:1::4")
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("allocated %v, want %v", got, want)
		}
	}
	p.Release(addr("fd00:db8:1::3"))
	if a, _ := p.Allocate(); a != addr("fd00:db8:1::3") {
		t.Errorf("after releasing ::3, allocated %s", a)
	}
	// A gateway elsewhere: ::1 is a member's then.
	p = mustPool6(t, "fd00:db8:2::/64", "fd00:db8:2::fe")
	if a, _ := p.Allocate(); a != addr("fd00:db8:2::1") {
		t.Errorf("with gateway ::fe, first member %s, want ::1", a)
	}
}

// A /64 holds 2^64 addresses: nothing may walk it. Holding its very last
// address, a static one past a long run and the top of the range must all
// be instant, and the pool's size is what it holds.
func TestPool6NeverEnumerates(t *testing.T) {
	start := time.Now()
	p := mustPool6(t, "fd00:db8::/64", "fd00:db8::ffff:ffff:ffff:fffe")
	if err := p.Reserve(addr("fd00:db8::ffff:ffff:ffff:ffff")); err != nil {
		t.Fatal(err)
	}
	for range 10000 {
		if _, err := p.Allocate(); err != nil {
			t.Fatal(err)
		}
	}
	// The gateway is elsewhere: members start at ::1.
	if a, _ := p.Allocate(); a != addr("fd00:db8::2711") {
		t.Errorf("10001st member %s, want fd00:db8::2711", a)
	}
	if len(p.used) != 10004 {
		t.Errorf("pool holds %d offsets, want 10004 (::0, gateway, last, 10001 members)", len(p.used))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("10001 allocations in a /64 took %s", d)
	}
	if !p.Contains(addr("fd00:db8::ffff:ffff:ffff:ffff")) || p.Contains(addr("fd00:db8::ffff:ffff:ffff:fffe")) {
		t.Error("Contains: the last address is held, the gateway is not reported")
	}
}

func TestPool6Exhaustion(t *testing.T) {
	p := mustPool6(t, "fd00:db8::/126", "")
	for _, want := range addrs("fd00:db8::2", "fd00:db8::3") {
		if a, err := p.Allocate(); err != nil || a != want {
			t.Fatalf("Allocate = %s, %v; want %s", a, err, want)
		}
	}
	if _, err := p.Allocate(); !errors.Is(err, ErrExhausted) {
		t.Errorf("a full /126: %v, want ErrExhausted", err)
	}
}

func TestPool6Reserve(t *testing.T) {
	p := mustPool6(t, "fd00:db8:1::/64", "")
	for _, c := range []struct {
		ip   string
		kind error
	}{
		{"fd00:db8:1::1", ErrInvalid},     // the gateway
		{"fd00:db8:1::", ErrInvalid},      // the subnet-router address
		{"fd00:db8:2::5", ErrInvalid},     // outside
		{"172.18.0.5", ErrInvalid},        // IPv4
		{"::ffff:172.18.0.5", ErrInvalid}, // v4-mapped
		{"fd00:db8:1::99", nil},
		{"fd00:db8:1::99", ErrInUse},
	} {
		err := p.Reserve(addr(c.ip))
		if (c.kind == nil) != (err == nil) || (c.kind != nil && !errors.Is(err, c.kind)) {
			t.Errorf("Reserve(%s) = %v, want %v", c.ip, err, c.kind)
		}
	}
	if a, _ := p.Allocate(); a != addr("fd00:db8:1::2") {
		t.Errorf("static ::99 held, first allocation %s, want ::2", a)
	}
}

func TestNewPool6Errors(t *testing.T) {
	for _, c := range []struct{ subnet, gateway string }{
		{"", ""},
		{"172.18.0.0/16", ""},
		{"fd00::/48", ""},  // wider than a /64
		{"fd00::/127", ""}, // no room
		{"fd00::/64", "fd00:1::1"},
		{"fd00::/64", "fd00::"},
	} {
		if _, err := NewPool6(pfx(c.subnet), addr(c.gateway)); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewPool6(%q, %q) = %v, want ErrInvalid", c.subnet, c.gateway, err)
		}
	}
	// Host bits are masked off; in a /80 the offset is the last 48 bits.
	p := mustPool6(t, "fd00:db8:1:2:3:4:5:6/80", "")
	if p.Subnet() != pfx("fd00:db8:1:2:3::/80") || p.Gateway() != addr("fd00:db8:1:2:3::1") {
		t.Errorf("normalised to %s gateway %s", p.Subnet(), p.Gateway())
	}
}

// Random reserves, releases and allocations agree with a naive pool.
func TestPool6MatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	p := mustPool6(t, "fd00::/120", "fd00::10")
	naive := map[netip.Addr]bool{}
	base := addr("fd00::")
	at := func(i int) netip.Addr {
		a := base.As16()
		a[15] = byte(i)
		return netip.AddrFrom16(a)
	}
	for range 5000 {
		i := r.IntN(256)
		switch r.IntN(3) {
		case 0:
			err := p.Reserve(at(i))
			ok := i != 0 && i != 0x10 && !naive[at(i)]
			if (err == nil) != ok {
				t.Fatalf("Reserve(%s) = %v, naive says %v", at(i), err, ok)
			}
			if ok {
				naive[at(i)] = true
			}
		case 1:
			p.Release(at(i))
			delete(naive, at(i))
		case 2:
			want := -1
			for j := 1; j < 256; j++ {
				if j != 0x10 && !naive[at(j)] {
					want = j
					break
				}
			}
			a, err := p.Allocate()
			if want < 0 {
				if err == nil {
					t.Fatalf("Allocate = %s, naive pool is full", a)
				}
				continue
			}
			if err != nil || a != at(want) {
				t.Fatalf("Allocate = %s, %v; naive says %s", a, err, at(want))
			}
			naive[a] = true
		}
	}
}
