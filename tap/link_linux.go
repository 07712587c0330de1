package tap

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// packetPeer is the name of the veth end that the AF_PACKET socket reads.
const packetPeer = "nr-uplink"

// TunError reports that /dev/net/tun cannot be used, with what to do.
type TunError struct{ Err error }

func (e *TunError) Error() string {
	switch {
	case errors.Is(e.Err, os.ErrNotExist) || errors.Is(e.Err, unix.ENODEV) || errors.Is(e.Err, unix.ENXIO):
		return "no /dev/net/tun: load the tun module (modprobe tun) or use --link-mode packet"
	case errors.Is(e.Err, os.ErrPermission) || errors.Is(e.Err, unix.EPERM):
		return "no permission on /dev/net/tun: it must be mode 0666 as distros ship it (chmod 0666 /dev/net/tun), or use --link-mode packet"
	}
	return fmt.Sprintf("cannot use /dev/net/tun: %v (or use --link-mode packet)", e.Err)
}

func (e *TunError) Unwrap() error { return e.Err }

// Make creates and configures eth0 (and brings lo up) in the current
// network namespace, which must be the sandbox's.
func Make(cfg Config) (Link, error) {
	if err := cfg.Validate(); err != nil {
		return Link{}, err
	}
	h, err := newHandle()
	if err != nil {
		return Link{}, err
	}
	defer h.Close()
	if err := setUp(h, "lo"); err != nil {
		return Link{}, err
	}
	link, err := makeLink(h, cfg)
	if err != nil {
		return Link{}, err
	}
	if err := configure(h, cfg); err != nil {
		if link.FD >= 0 {
			unix.Close(link.FD)
		}
		return Link{}, err
	}
	return link, nil
}

func makeLink(h *netlink.Handle, cfg Config) (Link, error) {
	switch cfg.Mode {
	case ModePacket:
		return makePacketLink(h, cfg)
	case ModeAdopt:
		return adopt(h, cfg)
	}
	fd, err := openTAP(cfg.Name)
	if err == nil {
		return Link{FD: fd, Mode: ModeTAP}, nil
	}
	var tunErr *TunError
	if cfg.Mode == ModeAuto && errors.As(err, &tunErr) {
		return makePacketLink(h, cfg)
	}
	return Link{}, err
}

// Attach opens the TAP name in the current network namespace, making it
// if it does not exist, and leaves its configuration alone (slirp4netns's
// mode without -c: the client made and configures it).
func Attach(name string) (Link, error) {
	fd, err := openTAP(name)
	if err != nil {
		return Link{}, err
	}
	return Link{FD: fd, Mode: ModeTAP}, nil
}

// openTAP makes a TAP without IFF_VNET_HDR: gVisor's fdbased endpoint does
// not handle the virtio header on a non-socket fd (see docs/ARCHITECTURE.md,
// Measured facts: The vnet-header trap).
func openTAP(name string) (int, error) {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return -1, &TunError{Err: err}
	}
	ifce, err := water.New(water.Config{
		DeviceType:             water.TAP,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name},
	})
	if err != nil {
		return -1, &TunError{Err: err}
	}
	f, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		ifce.Close()
		return -1, fmt.Errorf("tap: unexpected device type %T", ifce.ReadWriteCloser)
	}
	// Dup to own a plain fd: the *os.File would close it when collected.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return -1, fmt.Errorf("tap: dup: %w", err)
	}
	return fd, nil
}

// adopt renames an interface moved in from the host to cfg.Name. Its
// frames are the kernel's: there is no descriptor (FD -1).
func adopt(h *netlink.Handle, cfg Config) (Link, error) {
	link, err := h.LinkByName(cfg.Adopt)
	if err != nil {
		return Link{}, fmt.Errorf("find %s: %w", cfg.Adopt, err)
	}
	if err := h.LinkSetName(link, cfg.Name); err != nil {
		return Link{}, fmt.Errorf("rename %s to %s: %w", cfg.Adopt, cfg.Name, err)
	}
	return Link{FD: -1, Mode: ModeAdopt}, nil
}

// makePacketLink makes eth0 one end of a veth pair and returns an AF_PACKET
// socket bound to the other end, with virtio headers so that gVisor can
// exchange 64 KiB GSO frames even at a small MTU.
func makePacketLink(h *netlink.Handle, cfg Config) (Link, error) {
	mac, _ := net.ParseMAC(cfg.MAC)
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: cfg.Name, MTU: cfg.MTU, HardwareAddr: mac},
		PeerName:  packetPeer,
	}
	if err := h.LinkAdd(veth); err != nil {
		return Link{}, fmt.Errorf("create veth %s: %w", cfg.Name, err)
	}
	peer, err := h.LinkByName(packetPeer)
	if err != nil {
		return Link{}, fmt.Errorf("find veth peer: %w", err)
	}
	if err := h.LinkSetMTU(peer, cfg.MTU); err != nil {
		return Link{}, fmt.Errorf("set MTU of veth peer: %w", err)
	}
	if cfg.PeerMAC != "" {
		peerMAC, err := net.ParseMAC(cfg.PeerMAC)
		if err != nil {
			return Link{}, fmt.Errorf("gateway MAC: %w", err)
		}
		if err := h.LinkSetHardwareAddr(peer, peerMAC); err != nil {
			return Link{}, fmt.Errorf("set MAC of veth peer: %w", err)
		}
	}
	if err := h.LinkSetUp(peer); err != nil {
		return Link{}, fmt.Errorf("bring veth peer up: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return Link{}, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		unix.Close(fd)
		return Link{}, fmt.Errorf("packet socket: enable virtio headers: %w", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: peer.Attrs().Index}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return Link{}, fmt.Errorf("bind packet socket to %s: %w", packetPeer, err)
	}
	return Link{FD: fd, Mode: ModePacket}, nil
}

func configure(h *netlink.Handle, cfg Config) error {
	link, err := h.LinkByName(cfg.Name)
	if err != nil {
		return fmt.Errorf("find %s: %w", cfg.Name, err)
	}
	mac, _ := net.ParseMAC(cfg.MAC)
	if err := h.LinkSetHardwareAddr(link, mac); err != nil {
		return fmt.Errorf("set MAC of %s: %w", cfg.Name, err)
	}
	if err := h.LinkSetMTU(link, cfg.MTU); err != nil {
		return fmt.Errorf("set MTU of %s: %w", cfg.Name, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   cfg.Address.Addr().AsSlice(),
		Mask: net.CIDRMask(cfg.Address.Bits(), cfg.Address.Addr().BitLen()),
	}}
	if err := h.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("add %s to %s: %w", cfg.Address, cfg.Name, err)
	}
	v6 := cfg.Address6.IsValid()
	if cfg.NoIPv6 {
		// Before the link is up: no link-local address, no router or
		// multicast listener solicitations on the segment.
		if err := setIPv6Conf(cfg.Name, "disable_ipv6", "1"); err != nil {
			return err
		}
	}
	if cfg.SkipDAD || v6 {
		if err := setIPv6Conf(cfg.Name, "accept_dad", "0"); err != nil {
			return err
		}
	}
	if v6 {
		if err := setIPv6Conf(cfg.Name, "accept_ra", "0"); err != nil {
			return err
		}
		addr6 := &netlink.Addr{Flags: unix.IFA_F_NODAD, IPNet: &net.IPNet{
			IP:   cfg.Address6.Addr().AsSlice(),
			Mask: net.CIDRMask(cfg.Address6.Bits(), 128),
		}}
		if err := h.AddrAdd(link, addr6); err != nil {
			return fmt.Errorf("add %s to %s: %w", cfg.Address6, cfg.Name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring %s up: %w", cfg.Name, err)
	}
	if cfg.NoDefaultRoute {
		return nil
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: cfg.Gateway.AsSlice()}
	if err := h.RouteAdd(route); err != nil {
		return fmt.Errorf("add default route via %s: %w", cfg.Gateway, err)
	}
	if v6 {
		route6 := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: cfg.Gateway6.AsSlice(),
			Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}
		if err := h.RouteAdd(route6); err != nil {
			return fmt.Errorf("add default route via %s: %w", cfg.Gateway6, err)
		}
	}
	return nil
}

// LoopbackUp brings lo up: all the network a --network none sandbox has.
func LoopbackUp() error {
	h, err := newHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	return setUp(h, "lo")
}

// newHandle opens one rtnetlink socket for all of a link's requests: the
// package-level functions of netlink open one per request.
func newHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	return h, nil
}

func setUp(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// setIPv6Conf sets one of the link's IPv6 settings. /proc/sys/net belongs
// to the network namespace of the process that opens it, so this reaches
// the namespace being configured. A kernel without IPv6 has nothing to set.
func setIPv6Conf(link, key, value string) error {
	err := os.WriteFile("/proc/sys/net/ipv6/conf/"+link+"/"+key, []byte(value), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("set net.ipv6.conf.%s.%s: %w", link, key, err)
	}
	return nil
}
