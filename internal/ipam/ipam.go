// Package ipam hands out the addresses of one network segment the way
// Docker's default IPAM does: for IPv4 (Pool) the lowest free address of
// the network's ip-range, never the subnet's network or broadcast address
// nor the gateway, plus static addresses (--ip) anywhere in the subnet;
// for IPv6 (Pool6) the same from the subnet's ::2 upwards, with static
// --ip6 addresses. It also derives a member's MAC from its address
// (Docker's 02:42 rule).
//
// The package is pure: no I/O, no globals. A Pool is not safe for concurrent
// use; its owner serialises access.
package ipam

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sort"

	"github.com/netns-run/netns-run/internal/kinderr"
)

// Sentinel errors, for errors.Is. The errors the package returns carry a
// one-line message for people and wrap one of these.
var (
	// ErrExhausted: no free address is left in the pool's range.
	ErrExhausted = errors.New("address range exhausted")
	// ErrInUse: the address is already held by another sandbox.
	ErrInUse = errors.New("address in use")
	// ErrInvalid: the address, subnet, range or gateway is not usable.
	ErrInvalid = errors.New("invalid address")
)

// errorf is the package's error: a message for people that wraps one of
// the sentinels above, for errors.Is.
func errorf(kind error, format string, args ...any) error {
	return kinderr.New(kind, format, args...)
}

// InUseError is the error for an address another sandbox already holds:
// "address 172.18.0.5 is already in use by another sandbox". It wraps
// ErrInUse.
func InUseError(ip netip.Addr) error {
	return errorf(ErrInUse, "address %s is already in use by another sandbox", ip)
}

// Pool is the address pool of one IPv4 subnet.
//
// It keeps the taken addresses as a sorted set of uint32s (4 bytes per
// address held, nothing allocated up front), so a /16 or larger costs only
// what is in use; Allocate is a binary search.
type Pool struct {
	subnet  netip.Prefix
	ipRange netip.Prefix // never zero: the subnet when none was given
	gateway netip.Addr

	network, broadcast, gw uint32 // permanently taken, not reported by InUse
	lo, hi                 uint32 // the range Allocate hands out from, inclusive

	// used is sorted and duplicate-free: every address held, plus network,
	// broadcast and gateway.
	used []uint32
}

// MinSubnetBits is the narrowest subnet a Pool accepts: a /30 holds the
// network address, the gateway, one member and the broadcast address.
const MinSubnetBits = 30

// NewPool returns the pool of subnet. ipRange is the part Allocate hands out
// from (the zero Prefix means the whole subnet); it must lie inside subnet.
// gateway must be inside subnet and is never handed out; the zero Addr means
// the subnet's first address (.1). Host bits in subnet or ipRange are
// ignored (masked off). IPv4 only.
func NewPool(subnet netip.Prefix, ipRange netip.Prefix, gateway netip.Addr) (*Pool, error) {
	if !subnet.IsValid() {
		return nil, errorf(ErrInvalid, "no subnet given: pass a subnet such as 172.18.0.0/16")
	}
	if !subnet.Addr().Is4() {
		return nil, errorf(ErrInvalid, "subnet %s is not IPv4: only IPv4 networks are supported for now", subnet)
	}
	subnet = subnet.Masked()
	if subnet.Bits() > MinSubnetBits {
		return nil, errorf(ErrInvalid, "subnet %s is too small: use a /%d or larger", subnet, MinSubnetBits)
	}
	p := &Pool{subnet: subnet}
	p.network, p.broadcast = bounds(subnet)

	if gateway.IsValid() {
		gateway = gateway.Unmap()
		if !subnet.Contains(gateway) {
			return nil, errorf(ErrInvalid, "gateway %s is outside subnet %s: pick a gateway inside the subnet", gateway, subnet)
		}
		switch u := toU32(gateway); u {
		case p.network:
			return nil, errorf(ErrInvalid, "gateway %s is the network address of %s: pick another gateway, such as %s", gateway, subnet, fromU32(p.network+1))
		case p.broadcast:
			return nil, errorf(ErrInvalid, "gateway %s is the broadcast address of %s: pick another gateway, such as %s", gateway, subnet, fromU32(p.network+1))
		}
	} else {
		gateway = fromU32(p.network + 1)
	}
	p.gateway = gateway
	p.gw = toU32(gateway)

	if ipRange.IsValid() {
		if !ipRange.Addr().Is4() {
			return nil, errorf(ErrInvalid, "ip-range %s is not IPv4: only IPv4 networks are supported for now", ipRange)
		}
		ipRange = ipRange.Masked()
		if ipRange.Bits() < subnet.Bits() || !subnet.Contains(ipRange.Addr()) {
			return nil, errorf(ErrInvalid, "ip-range %s is outside subnet %s: pick a range inside the subnet", ipRange, subnet)
		}
	} else {
		ipRange = subnet
	}
	p.ipRange = ipRange
	p.lo, p.hi = bounds(ipRange)

	p.used = []uint32{p.network, p.gw, p.broadcast} // network < gw < broadcast
	return p, nil
}

// Subnet returns the pool's subnet.
func (p *Pool) Subnet() netip.Prefix { return p.subnet }

// Gateway returns the gateway's address.
func (p *Pool) Gateway() netip.Addr { return p.gateway }

// Allocate takes the lowest free address of the pool's range and returns it.
// The subnet's network and broadcast addresses and the gateway are never
// handed out, nor any address held (allocated or reserved).
func (p *Pool) Allocate() (netip.Addr, error) {
	u, ok := p.lowestFree()
	if !ok {
		return netip.Addr{}, errorf(ErrExhausted, "no free address in %s: remove a sandbox or widen --ip-range", p.ipRange)
	}
	p.insert(u)
	return fromU32(u), nil
}

// lowestFree finds the lowest address in [lo, hi] missing from used.
func (p *Pool) lowestFree() (uint32, bool) { return lowestFree(p.used, p.lo, p.hi) }

// lowestFree finds the lowest value in [lo, hi] (lo <= hi) missing from
// used, which is sorted and duplicate-free.
//
// So used[j]-j never decreases; from the first held value at or above lo,
// the values run on without a gap exactly as long as used[j]-j stays
// equal, and the first j where it grows marks the gap. That is a binary
// search, whatever the size of the range.
func lowestFree[T uint32 | uint64](used []T, lo, hi T) (T, bool) {
	i, found := slices.BinarySearch(used, lo)
	if !found {
		return lo, true
	}
	base := used[i] - T(i)
	n := len(used)
	j := i + 1 + sort.Search(n-i-1, func(k int) bool {
		return used[i+1+k]-T(i+1+k) != base
	})
	// used[i..j-1] is the run lo, lo+1, ... without a gap.
	if last := used[j-1]; last < hi {
		return last + 1, true
	}
	return 0, false
}

// Reserve takes a given address (a static --ip). As in Docker, it must lie
// inside the subnet but may lie outside the ip-range; it must not be the
// gateway, the network or the broadcast address, nor already held.
func (p *Pool) Reserve(ip netip.Addr) error {
	if !ip.IsValid() {
		return errorf(ErrInvalid, "no address given: pass an address inside %s", p.subnet)
	}
	ip = ip.Unmap()
	if !ip.Is4() {
		return errorf(ErrInvalid, "address %s is not IPv4: pass an IPv4 address inside %s", ip, p.subnet)
	}
	if !p.subnet.Contains(ip) {
		return errorf(ErrInvalid, "address %s is outside subnet %s: pick an address inside the subnet", ip, p.subnet)
	}
	switch u := toU32(ip); u {
	case p.gw:
		return errorf(ErrInvalid, "address %s is the gateway of %s: pick another address", ip, p.subnet)
	case p.network:
		return errorf(ErrInvalid, "address %s is the network address of %s: pick another address", ip, p.subnet)
	case p.broadcast:
		return errorf(ErrInvalid, "address %s is the broadcast address of %s: pick another address", ip, p.subnet)
	}
	if !p.insert(toU32(ip)) {
		return InUseError(ip)
	}
	return nil
}

// Release gives an address back. Releasing an address that is not held, or
// the gateway, network or broadcast address, does nothing.
func (p *Pool) Release(ip netip.Addr) {
	ip = ip.Unmap()
	if !ip.Is4() || !p.subnet.Contains(ip) {
		return
	}
	u := toU32(ip)
	if p.permanent(u) {
		return
	}
	if i, found := slices.BinarySearch(p.used, u); found {
		p.used = slices.Delete(p.used, i, i+1)
	}
}

// Contains reports whether ip is held (allocated or reserved).
func (p *Pool) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.Is4() || !p.subnet.Contains(ip) {
		return false
	}
	u := toU32(ip)
	if p.permanent(u) {
		return false
	}
	_, found := slices.BinarySearch(p.used, u)
	return found
}

func (p *Pool) permanent(u uint32) bool {
	return u == p.network || u == p.broadcast || u == p.gw
}

// insert adds u to used and reports whether it was absent.
func (p *Pool) insert(u uint32) bool {
	i, found := slices.BinarySearch(p.used, u)
	if found {
		return false
	}
	p.used = slices.Insert(p.used, i, u)
	return true
}

// MAC returns the MAC Docker gives the member with IPv4 address ip: 02:42
// followed by the four address bytes (172.17.0.2 -> 02:42:ac:11:00:02). It
// returns nil for an address that is not IPv4.
func MAC(ip netip.Addr) net.HardwareAddr {
	ip = ip.Unmap()
	if !ip.Is4() {
		return nil
	}
	a := ip.As4()
	return net.HardwareAddr{0x02, 0x42, a[0], a[1], a[2], a[3]}
}

// SLAAC returns the address a host with the given MAC makes for itself in
// the /64 prefix from router advertisements (modified EUI-64, RFC 4291
// appendix A): the gateway and the member agree on it without asking.
// Prefix fe80::/64 gives the link-local address.
func SLAAC(prefix netip.Prefix, mac net.HardwareAddr) netip.Addr {
	a := prefix.Masked().Addr().As16()
	a[8], a[9], a[10] = mac[0]^0x02, mac[1], mac[2]
	a[11], a[12] = 0xff, 0xfe
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(a)
}

// LinkLocalPrefix is where SLAAC makes a link's own address.
var LinkLocalPrefix = netip.MustParsePrefix("fe80::/64")

// bounds returns the first and last address of an IPv4 prefix.
func bounds(p netip.Prefix) (first, last uint32) {
	first = toU32(p.Masked().Addr())
	last = first | uint32(uint64(1)<<(32-p.Bits())-1)
	return first, last
}

func toU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromU32(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}
