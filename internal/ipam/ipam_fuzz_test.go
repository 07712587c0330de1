package ipam

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// FuzzPools builds a pool of any subnet, ip-range and gateway, IPv4 or
// IPv6, and runs a script of allocations, reservations and releases on
// it against a plain model (a set): a bad pool is a one-line ErrInvalid,
// Allocate hands out the lowest free address of the range and never a
// reserved one, and Contains agrees with the model throughout.
func FuzzPools(f *testing.F) {
	f.Add("10.9.0.0/24", "", "", []byte{0, 0, 1, 0, 5, 2, 0, 5, 0})
	f.Add("172.18.0.0/16", "172.18.5.0/30", "172.18.5.1", []byte{0, 0, 0, 0, 0})
	f.Add("192.168.0.0/30", "", "192.168.0.2", []byte{0, 0, 1, 0, 1, 2, 0, 1, 0})
	f.Add("0.0.0.0/0", "", "", []byte{1, 0xff, 0xff, 0, 2, 0xff, 0xff})
	f.Add("10.0.0.0/24", "10.0.1.0/25", "10.0.0.0", []byte{0})
	f.Add("fd00:db8:1::/64", "", "fd00:db8:1::fe", []byte{0, 1, 0, 0xfe, 1, 0, 2, 0, 2, 0, 2, 0})
	f.Add("fd00:db8:1::/126", "", "", []byte{0, 0, 0, 0})
	f.Add("::ffff:10.0.0.0/120", "", "", []byte{0})
	f.Fuzz(func(t *testing.T, subnet, ipRange, gateway string, script []byte) {
		s, err := netip.ParsePrefix(subnet)
		if err != nil {
			return
		}
		r, _ := netip.ParsePrefix(ipRange)
		g, _ := netip.ParseAddr(gateway)
		if s.Addr().Is4() {
			runPool(t, s, r, g, script)
		} else {
			runPool6(t, s, g, script)
		}
	})
}

func checkPoolError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %q, want a one-line ErrInvalid", err)
	}
}

func runPool(t *testing.T, subnet, ipRange netip.Prefix, gateway netip.Addr, script []byte) {
	p, err := NewPool(subnet, ipRange, gateway)
	if err != nil {
		checkPoolError(t, err)
		return
	}
	network, broadcast := bounds(p.subnet)
	if !p.subnet.Contains(p.gateway) || p.gw == network || p.gw == broadcast {
		t.Fatalf("pool of %v has gateway %v", p.subnet, p.gateway)
	}
	held := map[uint32]bool{}
	taken := func(u uint32) bool { return held[u] || u == network || u == broadcast || u == p.gw }
	for len(script) > 0 {
		op := script[0] % 3
		var off uint32
		if len(script) >= 3 {
			off = uint32(binary.BigEndian.Uint16(script[1:3]))
			script = script[3:]
		} else {
			script = script[1:]
		}
		ip := fromU32(network + uint32(uint64(off)%(uint64(broadcast-network)+1)))
		switch op {
		case 0:
			got, err := p.Allocate()
			want, free := modelLowestFree(p.lo, p.hi, taken)
			switch {
			case !free && !errors.Is(err, ErrExhausted):
				t.Fatalf("Allocate in a full %v = %v, %v; want ErrExhausted", p.ipRange, got, err)
			case free && (err != nil || got != fromU32(want)):
				t.Fatalf("Allocate = %v, %v; want %v, the lowest free of %v", got, err, fromU32(want), p.ipRange)
			case free:
				held[want] = true
			}
		case 1:
			err := p.Reserve(ip)
			u := toU32(ip)
			switch {
			case taken(u) && err == nil:
				t.Fatalf("Reserve(%v) of a taken address succeeded", ip)
			case !taken(u) && err != nil:
				t.Fatalf("Reserve(%v) of a free address: %v", ip, err)
			case err == nil:
				held[u] = true
			}
		case 2:
			p.Release(ip)
			delete(held, toU32(ip))
		}
		if p.Contains(ip) != held[toU32(ip)] {
			t.Fatalf("Contains(%v) = %v, the model holds it: %v", ip, p.Contains(ip), held[toU32(ip)])
		}
	}
	if len(p.used) != len(held)+3 {
		t.Fatalf("the pool holds %d addresses, the model %d", len(p.used)-3, len(held))
	}
}

func runPool6(t *testing.T, subnet netip.Prefix, gateway netip.Addr, script []byte) {
	p, err := NewPool6(subnet, gateway)
	if err != nil {
		checkPoolError(t, err)
		return
	}
	if !p.subnet.Contains(p.gateway) || p.gw == 0 {
		t.Fatalf("pool of %v has gateway %v", p.subnet, p.gateway)
	}
	held := map[uint64]bool{}
	taken := func(u uint64) bool { return held[u] || u == 0 || u == p.gw }
	for len(script) > 0 {
		op := script[0] % 3
		var off uint64
		if len(script) >= 3 {
			off = uint64(binary.BigEndian.Uint16(script[1:3]))
			script = script[3:]
		} else {
			script = script[1:]
		}
		if b := p.subnet.Bits(); b > 64 {
			off %= 1 << (128 - b)
		}
		ip := p.addr(off)
		switch op {
		case 0:
			got, err := p.Allocate()
			want, free := modelLowestFree(1, p.hi, taken)
			switch {
			case !free && !errors.Is(err, ErrExhausted):
				t.Fatalf("Allocate in a full %v = %v, %v; want ErrExhausted", p.subnet, got, err)
			case free && (err != nil || got != p.addr(want)):
				t.Fatalf("Allocate = %v, %v; want %v", got, err, p.addr(want))
			case free:
				held[want] = true
			}
		case 1:
			err := p.Reserve(ip)
			switch {
			case taken(off) && err == nil:
				t.Fatalf("Reserve(%v) of a taken address succeeded", ip)
			case !taken(off) && err != nil:
				t.Fatalf("Reserve(%v) of a free address: %v", ip, err)
			case err == nil:
				held[off] = true
			}
		case 2:
			p.Release(ip)
			delete(held, off)
		}
		if p.Contains(ip) != held[off] {
			t.Fatalf("Contains(%v) = %v, the model holds it: %v", ip, p.Contains(ip), held[off])
		}
	}
	if len(p.used) != len(held)+2 {
		t.Fatalf("the pool holds %d addresses, the model %d", len(p.used)-2, len(held))
	}
}

// modelLowestFree is the model's lowest address from lo to hi that is not
// taken; the walk is bounded by what is held.
func modelLowestFree[T uint32 | uint64](lo, hi T, taken func(T) bool) (T, bool) {
	for a := lo; ; a++ {
		if !taken(a) {
			return a, true
		}
		if a == hi {
			return a, false
		}
	}
}
