package ipam

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Pool6 is the address pool of one IPv6 subnet, in Docker's order: the
// subnet's first address (::0, the subnet-router anycast address) is never
// handed out, the gateway defaults to ::1, and members get the lowest free
// address from there on. IPv6 has no broadcast address, so the last one is
// a member's too.
//
// Addresses are kept as their offset in the subnet, a sorted set of
// uint64s of what is held: a /64 holds 2^64 addresses and is never walked,
// Allocate is a binary search as in Pool.
type Pool6 struct {
	subnet  netip.Prefix
	gateway netip.Addr
	hi, gw  uint64   // the last offset; the gateway's
	used    []uint64 // sorted, duplicate-free: 0, the gateway, every address held
}

// Subnet sizes a Pool6 accepts: offsets fit in 64 bits, and a /126 holds
// ::0, the gateway and two members.
const (
	MinSubnet6Bits = 64
	MaxSubnet6Bits = 126
)

// NewPool6 returns the pool of an IPv6 subnet (host bits are masked off).
// gateway must be inside it and not its ::0 address; the zero Addr means
// the subnet's ::1.
func NewPool6(subnet netip.Prefix, gateway netip.Addr) (*Pool6, error) {
	if !subnet.IsValid() {
		return nil, errorf(ErrInvalid, "no IPv6 subnet given: pass a subnet such as fd00:db8:1::/64")
	}
	if !subnet.Addr().Is6() || subnet.Addr().Is4In6() {
		return nil, errorf(ErrInvalid, "subnet %s is not IPv6: pass an IPv6 subnet such as fd00:db8:1::/64", subnet)
	}
	subnet = subnet.Masked()
	if b := subnet.Bits(); b < MinSubnet6Bits || b > MaxSubnet6Bits {
		return nil, errorf(ErrInvalid, "IPv6 subnet %s: use a prefix from /%d to /%d", subnet, MinSubnet6Bits, MaxSubnet6Bits)
	}
	p := &Pool6{subnet: subnet, hi: ^uint64(0) >> (subnet.Bits() - 64)}
	if gateway.IsValid() {
		if !subnet.Contains(gateway) {
			return nil, errorf(ErrInvalid, "IPv6 gateway %s is outside subnet %s: pick a gateway inside the subnet", gateway, subnet)
		}
		if p.offset(gateway) == 0 {
			return nil, errorf(ErrInvalid, "IPv6 gateway %s is the subnet-router address of %s: pick another gateway, such as %s", gateway, subnet, p.addr(1))
		}
	} else {
		gateway = p.addr(1)
	}
	p.gateway = gateway
	p.gw = p.offset(gateway)
	p.used = []uint64{0, p.gw}
	return p, nil
}

// Subnet returns the pool's subnet.
func (p *Pool6) Subnet() netip.Prefix { return p.subnet }

// Gateway returns the gateway's address.
func (p *Pool6) Gateway() netip.Addr { return p.gateway }

// Allocate takes the lowest free address and returns it.
func (p *Pool6) Allocate() (netip.Addr, error) {
	u, ok := lowestFree(p.used, 1, p.hi)
	if !ok {
		return netip.Addr{}, errorf(ErrExhausted, "no free address in %s: remove a sandbox or use a larger IPv6 subnet", p.subnet)
	}
	p.insert(u)
	return p.addr(u), nil
}

// Reserve takes a given address (a static --ip6): inside the subnet, not
// its ::0 address nor the gateway, and not held already.
func (p *Pool6) Reserve(ip netip.Addr) error {
	if !ip.IsValid() {
		return errorf(ErrInvalid, "no address given: pass an address inside %s", p.subnet)
	}
	if !ip.Is6() || ip.Is4In6() {
		return errorf(ErrInvalid, "address %s is not IPv6: pass an IPv6 address inside %s", ip, p.subnet)
	}
	ip = ip.WithZone("")
	if !p.subnet.Contains(ip) {
		return errorf(ErrInvalid, "address %s is outside subnet %s: pick an address inside the subnet", ip, p.subnet)
	}
	switch u := p.offset(ip); u {
	case p.gw:
		return errorf(ErrInvalid, "address %s is the gateway of %s: pick another address", ip, p.subnet)
	case 0:
		return errorf(ErrInvalid, "address %s is the subnet-router address of %s: pick another address", ip, p.subnet)
	}
	if !p.insert(p.offset(ip)) {
		return InUseError(ip)
	}
	return nil
}

// Release gives an address back; one not held, or the gateway, is left.
func (p *Pool6) Release(ip netip.Addr) {
	if !p.subnet.Contains(ip) {
		return
	}
	u := p.offset(ip)
	if u == 0 || u == p.gw {
		return
	}
	if i, found := slices.BinarySearch(p.used, u); found {
		p.used = slices.Delete(p.used, i, i+1)
	}
}

// Contains reports whether ip is held (allocated or reserved).
func (p *Pool6) Contains(ip netip.Addr) bool {
	if !p.subnet.Contains(ip) {
		return false
	}
	u := p.offset(ip)
	if u == 0 || u == p.gw {
		return false
	}
	_, found := slices.BinarySearch(p.used, u)
	return found
}

func (p *Pool6) insert(u uint64) bool {
	i, found := slices.BinarySearch(p.used, u)
	if found {
		return false
	}
	p.used = slices.Insert(p.used, i, u)
	return true
}

// addr is the subnet's address at offset u.
func (p *Pool6) addr(u uint64) netip.Addr {
	a := p.subnet.Addr().As16()
	binary.BigEndian.PutUint64(a[8:], binary.BigEndian.Uint64(a[8:])|u)
	return netip.AddrFrom16(a)
}

// offset is the place in the subnet of an address inside it: its host
// bits, all within the last 64.
func (p *Pool6) offset(ip netip.Addr) uint64 {
	a := ip.As16()
	return binary.BigEndian.Uint64(a[8:]) & p.hi
}
