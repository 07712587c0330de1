package netstore

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/netns-run/netns-run/internal/ipam"
)

// reserved reports whether name cannot be given to a user-defined network:
// Docker's pre-defined networks plus our private mode.
func reserved(name string) bool {
	switch name {
	case BridgeName, "host", "none", "private":
		return true
	}
	return false
}

// Driver options (-o key=value).
const (
	OptMacvlanMode = "macvlan_mode" // bridge (default) or private
	OptParent      = "parent"       // host interface: kernel macvlan when privileged
	OptPromisc     = "promisc"      // on or off: set the parent promiscuous
)

// ValidName reports whether name follows Docker's rule for network names:
// [a-zA-Z0-9][a-zA-Z0-9_.-]*.
func ValidName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// normalise validates everything in req that does not depend on the other
// networks and returns the network it asks for: driver, gateway and options
// filled in; Subnet zero when one is to be picked from the default pools.
func normalise(req CreateRequest) (Network, error) {
	n := Network{
		Name:     req.Name,
		Driver:   req.Driver,
		Subnet:   req.Subnet,
		Gateway:  req.Gateway,
		IPRange:  req.IPRange,
		Internal: req.Internal,
	}
	switch {
	case n.Name == "":
		return Network{}, errorf(ErrInvalid, "no network name given: netns-run network create [OPTIONS] NAME")
	case !ValidName(n.Name):
		return Network{}, errorf(ErrInvalid, "invalid network name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", n.Name)
	case reserved(n.Name):
		return Network{}, errorf(ErrInvalid, "network name %q is reserved: pick another name", n.Name)
	}

	if n.Driver == "" {
		n.Driver = DriverBridge
	}
	if n.Driver != DriverBridge && n.Driver != DriverMacvlan {
		return Network{}, errorf(ErrInvalid, "unknown driver %q: want bridge or macvlan", n.Driver)
	}
	if err := checkOptions(n.Driver, req.Options); err != nil {
		return Network{}, err
	}
	if len(req.Options) > 0 {
		n.Options = maps.Clone(req.Options)
	}
	if err := normalise6(&n, req); err != nil {
		return Network{}, err
	}

	if !n.Subnet.IsValid() {
		if n.Gateway.IsValid() {
			return Network{}, errorf(ErrInvalid, "--gateway %s needs --subnet: give the subnet the gateway belongs to", n.Gateway)
		}
		if n.IPRange.IsValid() {
			return Network{}, errorf(ErrInvalid, "--ip-range %s needs --subnet: give the subnet the range belongs to", n.IPRange)
		}
		return n, nil
	}
	if !n.Subnet.Addr().Is4() {
		return Network{}, errorf(ErrInvalid, "subnet %s is not IPv4: only IPv4 networks are supported for now", n.Subnet)
	}
	if m := n.Subnet.Masked(); m != n.Subnet {
		return Network{}, errorf(ErrInvalid, "subnet %s has host bits set: use %s", n.Subnet, m)
	}
	if n.IPRange.IsValid() {
		if !n.IPRange.Addr().Is4() {
			return Network{}, errorf(ErrInvalid, "ip-range %s is not IPv4: only IPv4 networks are supported for now", n.IPRange)
		}
		if m := n.IPRange.Masked(); m != n.IPRange {
			return Network{}, errorf(ErrInvalid, "ip-range %s has host bits set: use %s", n.IPRange, m)
		}
	}
	if n.Gateway.IsValid() {
		n.Gateway = n.Gateway.Unmap()
	}
	pool, err := ipam.NewPool(n.Subnet, n.IPRange, n.Gateway)
	if err != nil {
		return Network{}, errorf(ErrInvalid, "%s", err)
	}
	n.Gateway = pool.Gateway()
	return n, nil
}

// normalise6 validates the IPv6 side of req into n.
func normalise6(n *Network, req CreateRequest) error {
	switch {
	case !req.IPv6 && req.Subnet6.IsValid():
		return errorf(ErrInvalid, "subnet %s is IPv6 but IPv6 is not enabled: add --ipv6", req.Subnet6)
	case !req.IPv6 && req.Gateway6.IsValid():
		return errorf(ErrInvalid, "gateway %s is IPv6 but IPv6 is not enabled: add --ipv6", req.Gateway6)
	case !req.IPv6:
		return nil
	case req.Gateway6.IsValid() && !req.Subnet6.IsValid():
		return errorf(ErrInvalid, "--gateway %s needs an IPv6 --subnet: give the subnet the gateway belongs to", req.Gateway6)
	}
	n.EnableIPv6 = true
	if !req.Subnet6.IsValid() {
		return nil // picked at Create
	}
	if m := req.Subnet6.Masked(); m != req.Subnet6 {
		return errorf(ErrInvalid, "subnet %s has host bits set: use %s", req.Subnet6, m)
	}
	pool, err := ipam.NewPool6(req.Subnet6, req.Gateway6)
	if err != nil {
		return errorf(ErrInvalid, "%s", err)
	}
	n.Subnet6, n.Gateway6 = pool.Subnet(), pool.Gateway()
	return nil
}

// checkOptions validates -o options for a driver.
func checkOptions(driver string, opts map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		v := opts[k]
		if driver != DriverMacvlan {
			return errorf(ErrInvalid, "unknown option %q for driver %s: the %s driver takes no -o options", k, driver, driver)
		}
		switch k {
		case OptMacvlanMode:
			if v != "bridge" && v != "private" {
				return errorf(ErrInvalid, "invalid macvlan_mode %q: want bridge or private", v)
			}
		case OptParent:
			if !validIfName(v) {
				return errorf(ErrInvalid, "invalid parent %q: want a host interface name such as eth0", v)
			}
		case OptPromisc:
			if v != "on" && v != "off" {
				return errorf(ErrInvalid, "invalid promisc %q: want on or off", v)
			}
		default:
			return errorf(ErrInvalid, "unknown option %q for driver macvlan: want macvlan_mode, parent or promisc", k)
		}
	}
	if opts[OptPromisc] == "on" && opts[OptParent] == "" {
		return errorf(ErrInvalid, "promisc=on needs parent=IFACE: it makes the parent interface promiscuous")
	}
	return nil
}

// validIfName is the kernel's rule for interface names (dev_valid_name).
func validIfName(s string) bool {
	const ifNameSize = 16
	if s == "" || len(s) >= ifNameSize || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r == '/' || r == ':' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' || r == 0
	})
}

// check validates a network read from disk, so a hand-edited file cannot
// hand the daemon something Create would have refused.
func (n Network) check() error {
	if len(n.ID) != 64 || strings.Trim(n.ID, "0123456789abcdef") != "" {
		return fmt.Errorf("id %q is not 64 hex digits", n.ID)
	}
	if !ValidName(n.Name) {
		return fmt.Errorf("invalid name %q", n.Name)
	}
	if n.Driver != DriverBridge && n.Driver != DriverMacvlan {
		return fmt.Errorf("unknown driver %q", n.Driver)
	}
	if !n.Gateway.IsValid() {
		return fmt.Errorf("no gateway")
	}
	if _, err := n.Pool(); err != nil {
		return err
	}
	if n.EnableIPv6 {
		if _, err := n.Pool6(); err != nil {
			return err
		}
	} else if n.Subnet6.IsValid() || n.Gateway6.IsValid() {
		return fmt.Errorf("an IPv6 subnet without enable_ipv6")
	}
	if n.BuiltIn() {
		return nil
	}
	return checkOptions(n.Driver, n.Options)
}
