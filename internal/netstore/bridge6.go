package netstore

import (
	"errors"
	"net/netip"
	"slices"
)

// ErrHasMembers: the change needs a network no sandbox is on.
var ErrHasMembers = errors.New("network has members")

// SetBridgeIPv6 makes the built-in bridge dual stack (enable) or IPv4 only,
// as Docker's daemon settings ipv6 and fixed-cidr-v6 do for its default
// bridge: with subnet6 zero a unique local /64 is picked (or the one it
// has is kept), its gateway the subnet's ::1. It reports whether anything
// changed. A change while sandboxes hold addresses on the bridge fails
// with ErrHasMembers and changes nothing: their addresses were handed out
// for the bridge as it was.
func (s *Store) SetBridgeIPv6(enable bool, subnet6 netip.Prefix) (bool, error) {
	if subnet6.IsValid() && (!enable || !subnet6.Addr().Is6() || subnet6.Addr().Is4In6() || subnet6 != subnet6.Masked() || subnet6.Bits() < 64 || subnet6.Bits() > 120) {
		return false, errorf(ErrInvalid, "fixed-cidr-v6 %s: want an IPv6 subnet from /64 to /120, with ipv6 on", subnet6)
	}
	changed := false
	err := s.update(func(st *state) error {
		i := slices.IndexFunc(st.networks, Network.BuiltIn)
		if i < 0 {
			return errorf(ErrNotFound, "the built-in %s network is missing", BridgeName)
		}
		n := st.networks[i]
		want := n
		want.EnableIPv6, want.Subnet6, want.Gateway6 = enable, netip.Prefix{}, netip.Addr{}
		if enable {
			switch {
			case subnet6.IsValid():
				want.Subnet6 = subnet6
			case n.EnableIPv6:
				want.Subnet6 = n.Subnet6
			default:
				sub, ok := st.freeSubnet6(n.ID)
				if !ok {
					return errorf(ErrNoSubnet, "no free IPv6 /64 left for the %s network: set fixed-cidr-v6", BridgeName)
				}
				want.Subnet6 = sub
			}
			want.Gateway6 = firstAddr(want.Subnet6)
		}
		if want.EnableIPv6 == n.EnableIPv6 && want.Subnet6 == n.Subnet6 && want.Gateway6 == n.Gateway6 {
			return nil
		}
		if len(st.leases[n.ID])+len(st.leases6[n.ID]) > 0 {
			return errorf(ErrHasMembers, "the %s network has members: its IPv6 setting changes once none is left", BridgeName)
		}
		if enable && want.Subnet6 != n.Subnet6 {
			for _, o := range st.networks {
				if o.ID != n.ID && o.EnableIPv6 && o.Subnet6.Overlaps(want.Subnet6) {
					return errorf(ErrOverlap, "fixed-cidr-v6 %s overlaps network %s (%s)", want.Subnet6, o.Name, o.Subnet6)
				}
			}
		}
		st.networks[i] = want
		st.networksDirty = true
		changed = true
		return nil
	})
	return changed, err
}
