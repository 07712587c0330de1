// Package stack is the host side of a segment: a gVisor netstack that plays
// the sandbox's gateway. It answers ARP and ping, serves DNS on its resolver
// address, terminates the sandbox's outbound TCP and UDP and re-originates
// them from ordinary host sockets, and dials into the sandbox for published
// ports.
package stack

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/qdisc/fifo"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

const nicID tcpip.NICID = 1

// Config describes the gateway side of a segment.
type Config struct {
	Subnet     netip.Prefix     // the segment, e.g. 10.0.2.0/24
	Gateway    netip.Addr       // the gateway's address in Subnet
	Resolver   netip.Addr       // where the DNS proxy answers; may equal Gateway
	GatewayMAC net.HardwareAddr // the gateway NIC's MAC
	MTU        uint32
	// HostLoopback lets Gateway:P reach the host's 127.0.0.1:P. Off by
	// default: a sandbox must not reach local daemons unasked.
	HostLoopback bool
	// Internal refuses all outbound traffic (docker network create --internal).
	Internal bool
	// OutboundAddr, when valid, is the host IPv4 address outbound
	// connections are bound to (slirp4netns --outbound-addr).
	OutboundAddr netip.Addr
	// IPv6 is the segment's IPv6 side; without it the segment is IPv4
	// only.
	IPv6 *IPv6Config
	// Capture, when set, receives every frame the gateway sees, in pcap
	// format (capture.go).
	Capture io.Writer
	// MemberLimits bound each member address's outbound connections and
	// flows (limits.go); zero fields take DefaultMemberLimits.
	MemberLimits MemberLimits
	Logger       *slog.Logger
}

// IPv6Config is a segment's IPv6 side: the gateway routes Subnet, announced
// by router advertisements for SLAAC, or only as on-link when Assigned.
type IPv6Config struct {
	Subnet   netip.Prefix // a /64, e.g. fd00::/64; with Assigned a /64 to a /126
	Gateway  netip.Addr   // the gateway's address in Subnet; reaches the host's ::1 as Gateway reaches 127.0.0.1
	Resolver netip.Addr   // where the DNS proxy answers over IPv6
	// OutboundAddr, when valid, is the host IPv6 address outbound
	// connections are bound to (slirp4netns --outbound-addr6).
	OutboundAddr netip.Addr
	// Assigned: the members' addresses are handed out (IPAM on a shared
	// network) and set on their links, not made by SLAAC.
	Assigned bool
}

func (c *IPv6Config) validate() error {
	switch {
	case !c.Subnet.IsValid() || !c.Subnet.Addr().Is6() || c.Subnet.Addr().Is4In6():
		return fmt.Errorf("IPv6 subnet %s is not IPv6", c.Subnet)
	case !c.Assigned && c.Subnet.Bits() != 64:
		return fmt.Errorf("IPv6 subnet %s: SLAAC needs a /64", c.Subnet)
	case c.Subnet.Bits() < 64 || c.Subnet.Bits() > 126:
		return fmt.Errorf("IPv6 subnet %s: use a /64 to a /126", c.Subnet)
	case !c.Subnet.Contains(c.Gateway) || !c.Subnet.Contains(c.Resolver):
		return fmt.Errorf("IPv6 gateway %s and resolver %s must be inside %s", c.Gateway, c.Resolver, c.Subnet)
	}
	return nil
}

// Link is the frame descriptor the stack reads and writes.
type Link struct {
	FD int
	// Packet is true for an AF_PACKET socket with virtio headers, false
	// for a TAP.
	Packet bool
}

// Gateway is a running netstack attached to one link.
type Gateway struct {
	close func() // releases what the link holds once the stack has stopped
	cfg   Config
	// loopbackFor holds members let through to the host's loopback
	// individually (netns-run run --host-loopback on a shared segment).
	loopbackFor sync.Map // netip.Addr -> struct{}
	s           *gstack.Stack
	log         *slog.Logger
	usage       *usage       // what each member holds through the NAT
	conns       memberConns  // the NAT's TCP connections, by member
	refusals    refusalTable // the NAT's, for PeerStats
	ra          *advertiser  // nil without IPv6
	ping        *pinger
}

// TIME_WAIT is short because forwarder endpoints cannot be reused: with the
// 60 s default, a sandbox churning outbound connections stalls on SYNs to
// tuples still in TIME_WAIT (see docs/ARCHITECTURE.md, Measured facts:
// TIME_WAIT).
const timeWait = 500 * time.Millisecond

// New builds the gateway's stack without its link, which AttachFD adds, so
// that a supervisor can build it while the sandbox's agent starts rather
// than after (~0.25 ms less before the command runs).
func New(cfg Config) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !cfg.Subnet.Contains(cfg.Gateway) || !cfg.Subnet.Contains(cfg.Resolver) {
		return nil, fmt.Errorf("gateway %s and resolver %s must be inside %s", cfg.Gateway, cfg.Resolver, cfg.Subnet)
	}
	if cfg.IPv6 != nil {
		if err := cfg.IPv6.validate(); err != nil {
			return nil, err
		}
	}
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	g := &Gateway{close: func() {}, cfg: cfg, s: s, log: cfg.Logger, usage: newUsage(cfg.MemberLimits)}
	if err := g.tune(); err != nil {
		g.Close()
		return nil, err
	}
	g.startNAT()
	return g, nil
}

// AttachFD gives the stack a member's link descriptor, for a one-member
// segment. The stack owns link.FD from then on, also when AttachFD fails.
func (g *Gateway) AttachFD(link Link) error {
	ep, err := fdLink(g.cfg, link)
	if err != nil {
		unix.Close(link.FD)
		return err
	}
	g.close = func() { unix.Close(link.FD) }
	return g.attach(ep)
}

// NewOnEndpoint builds the stack on a link endpoint of our own, such as a
// switch's gateway port.
func NewOnEndpoint(cfg Config, ep gstack.LinkEndpoint) (*Gateway, error) {
	g, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := g.attach(ep); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// fdLink is gVisor's fdbased endpoint on a TAP or packet socket.
func fdLink(cfg Config, link Link) (gstack.LinkEndpoint, error) {
	opts := &fdbased.Options{
		FDs:            []int{link.FD},
		MTU:            cfg.MTU,
		EthernetHeader: true,
		Address:        tcpip.LinkAddress(cfg.GatewayMAC),
	}
	if link.Packet {
		// A socket fd allows GSO and a mapped ring (see
		// docs/ARCHITECTURE.md, Measured facts: The packet link).
		opts.GSOMaxSize = 65536
		opts.RXChecksumOffload = true
		opts.PacketDispatchMode = fdbased.PacketMMap
	}
	ep, err := fdbased.New(opts)
	if err != nil {
		return nil, fmt.Errorf("attach link: %w", err)
	}
	return ep, nil
}

func (g *Gateway) attach(ep gstack.LinkEndpoint) error {
	mac := ep.LinkAddress()
	if v6 := g.cfg.IPv6; v6 != nil {
		g.ra = newAdvertiser(g.s, mac, header.LinkLocalAddr(mac), v6)
	}
	g.ping = newPinger(g, mac)
	if g.cfg.Capture != nil {
		// Below the link watcher: the capture sees the frames it takes
		// too.
		var err error
		if ep, err = captureLink(ep, g.cfg.Capture, g.log); err != nil {
			return fmt.Errorf("start the packet capture: %w", err)
		}
	}
	ep = watchLink(ep, g)
	// A fifo qdisc moves writes off the TCP goroutine: +35-50% toward the
	// sandbox (docs/ARCHITECTURE.md, Measured facts: The fifo qdisc).
	qdisc := fifo.New(ep, 1, 1000)
	if terr := g.s.CreateNICWithOptions(nicID, ep, gstack.NICOptions{QDisc: qdisc}); terr != nil {
		return fmt.Errorf("create NIC: %s", terr)
	}
	// Promiscuous and spoofing let published connections carry the real
	// client's address as their source, and accept the replies to it.
	if terr := g.s.SetPromiscuousMode(nicID, true); terr != nil {
		return fmt.Errorf("promiscuous mode: %s", terr)
	}
	if terr := g.s.SetSpoofing(nicID, true); terr != nil {
		return fmt.Errorf("spoofing: %s", terr)
	}
	addrs := []netip.Prefix{
		netip.PrefixFrom(g.cfg.Gateway, g.cfg.Subnet.Bits()),
		netip.PrefixFrom(g.cfg.Resolver, g.cfg.Subnet.Bits()),
	}
	if v6 := g.cfg.IPv6; v6 != nil {
		addrs = append(addrs, netip.PrefixFrom(netipAddr(header.LinkLocalAddr(mac)), 64),
			netip.PrefixFrom(v6.Gateway, v6.Subnet.Bits()), netip.PrefixFrom(v6.Resolver, v6.Subnet.Bits()))
	}
	for _, a := range addrs {
		pa := tcpip.ProtocolAddress{
			Protocol:          proto(a.Addr()),
			AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr(a.Addr()), PrefixLen: a.Bits()},
		}
		if terr := g.s.AddProtocolAddress(nicID, pa, gstack.AddressProperties{}); terr != nil {
			if _, dup := terr.(*tcpip.ErrDuplicateAddress); !dup {
				return fmt.Errorf("add address %s: %s", a.Addr(), terr)
			}
		}
	}
	g.s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	if g.ra != nil {
		go g.ra.run()
	}
	return nil
}

// tune sets what was measured to pay. What stays at gVisor's defaults stays
// by measurement too (TAP at MTU 65520, 2 cores; see docs/ARCHITECTURE.md,
// Measured facts: gVisor's TCP settings at their defaults): TCP
// buffers of 1 MiB default / 4 MiB max with receive-buffer moderation
// (4/8 MiB: no gain and +4 MiB peak RSS; 256 KiB fixed or moderation off:
// slower), reno (cubic: no gain), and GOMAXPROCS at the number of cores
// (1: -25-35%; 4: no gain), which Go sets itself.
func (g *Gateway) tune() error {
	opts := []tcpip.SettableTransportProtocolOption{
		ptr(tcpip.TCPTimeWaitTimeoutOption(timeWait)),
		ptr(tcpip.TCPSACKEnabled(true)),
	}
	for _, o := range opts {
		if terr := g.s.SetTransportProtocolOption(tcp.ProtocolNumber, o); terr != nil {
			return fmt.Errorf("set TCP option %T: %s", o, terr)
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// AllowHostLoopback lets member reach the host's 127.0.0.1:P at the
// gateway's address, or stops it.
func (g *Gateway) AllowHostLoopback(member netip.Addr, allow bool) {
	if allow {
		g.loopbackFor.Store(member, struct{}{})
	} else {
		g.loopbackFor.Delete(member)
	}
}

// EndMember ends the NAT's TCP connections of member, which has left the
// segment: each is reset on the gateway's side and its host socket
// closed.
func (g *Gateway) EndMember(member netip.Addr) { g.conns.end(member) }

// Close stops the stack and closes its link (fdbased leaves the fd open).
func (g *Gateway) Close() {
	if g.ra != nil {
		g.ra.stop()
	}
	if g.ping != nil {
		g.ping.close()
	}
	g.s.Close()
	g.s.Wait()
	g.close()
}

// addr converts to netstack's address type.
func addr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// netipAddr is a as netip spells it; an IPv6 address stays one, v4-mapped
// ones included, so that hostTarget sees what the member sent: a member's
// IPv6 stack reaches no IPv4 host.
func netipAddr(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip
}

func proto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}
