// Package tap makes the sandbox's eth0 and configures it. It runs inside the
// sandbox's network namespace and knows nothing of the host-side stack: what
// it produces is a file descriptor that carries Ethernet frames, which the
// supervisor hands to the stack.
package tap

import (
	"fmt"
	"net"
	"net/netip"
)

// Mode says how eth0 is made.
type Mode string

const (
	// ModeAuto uses a TAP when /dev/net/tun is usable, else a veth pair
	// with an AF_PACKET socket.
	ModeAuto Mode = "auto"
	// ModeTAP makes eth0 a TAP device; it needs /dev/net/tun.
	ModeTAP Mode = "tap"
	// ModePacket makes eth0 one end of a veth pair whose peer is read and
	// written through an AF_PACKET socket; it needs no /dev/net/tun.
	ModePacket Mode = "packet"
	// ModeAdopt takes an interface already moved into the namespace (a
	// kernel macvlan made by a privileged supervisor), named by Config.Adopt.
	ModeAdopt Mode = "adopt"
)

// ParseMode checks a --link-mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeTAP, ModePacket:
		return m, nil
	}
	return "", fmt.Errorf("invalid link mode %q: want auto, tap or packet", s)
}

// Config is the address configuration of the sandbox's eth0.
type Config struct {
	Name    string       // interface name, normally "eth0"
	Mode    Mode         // how to make it
	MTU     int          // link MTU
	MAC     string       // the member's MAC, e.g. 02:42:0a:00:02:64
	PeerMAC string       // the gateway's MAC; the packet link gives it to the veth peer
	Address netip.Prefix // the member's address and the segment's prefix length
	Gateway netip.Addr   // default route
	// NoDefaultRoute leaves the default route alone: a second network
	// (netns-run network connect) reaches only its own subnet, as Docker.
	NoDefaultRoute bool
	// Adopt names the interface ModeAdopt renames to Name and configures.
	Adopt string
	// SkipDAD turns duplicate address detection off for the link's IPv6
	// addresses, so that an address from SLAAC is usable at once: the
	// gateway hands out the segment's addresses and knows them all.
	SkipDAD bool
	// Address6, when valid, is the link's IPv6 address (the one SLAAC
	// makes from the gateway's advertisements, set before the command
	// starts so that its first connect works), and Gateway6 the default
	// route: the gateway's link-local address, or on a kernel macvlan the
	// LAN router's address in Address6's prefix. Router advertisements are
	// not taken then: the address stays as set. Implies SkipDAD.
	Address6 netip.Prefix
	Gateway6 netip.Addr
	// NoIPv6 turns IPv6 off on the link (no link-local address either),
	// as a Docker engine does for a network without IPv6: the segment
	// routes none.
	NoIPv6 bool
}

// Validate reports a configuration that cannot be applied.
func (c Config) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("interface name is empty")
	}
	if c.MTU < 68 || c.MTU > 65535 {
		return fmt.Errorf("MTU %d out of range 68-65535", c.MTU)
	}
	if _, err := net.ParseMAC(c.MAC); err != nil {
		return fmt.Errorf("member MAC: %w", err)
	}
	if !c.Address.IsValid() || !c.Gateway.IsValid() {
		return fmt.Errorf("address and gateway are required")
	}
	if !c.Address.Masked().Contains(c.Gateway) {
		return fmt.Errorf("gateway %s is outside %s", c.Gateway, c.Address.Masked())
	}
	if c.NoIPv6 && c.Address6.IsValid() {
		return fmt.Errorf("IPv6 address %s on a link with IPv6 off", c.Address6)
	}
	if c.Address6.IsValid() && (!c.Address6.Addr().Is6() || !c.Gateway6.IsLinkLocalUnicast() && !c.Address6.Masked().Contains(c.Gateway6)) {
		return fmt.Errorf("IPv6 address %s needs an IPv6 address and a gateway that is link-local or inside it, not %s", c.Address6, c.Gateway6)
	}
	return nil
}

// Link is the frame-carrying descriptor of a made eth0.
type Link struct {
	FD   int  // a TAP fd or a bound AF_PACKET socket
	Mode Mode // ModeTAP or ModePacket, never ModeAuto
}
