package stack

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/netns-run/netns-run/forward/relay"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// maxInFlightSYNs bounds handshakes the forwarder dials at once.
	maxInFlightSYNs = 512
	dialTimeout     = 10 * time.Second
	// udpIdle ends an outbound UDP flow with no traffic either way.
	udpIdle = 60 * time.Second
)

// limits bound what one sandbox can make the host hold: the sandbox is
// untrusted (docs/ARCHITECTURE.md, Processes: Trust).
type limits struct {
	tcp, udp       atomic.Int64
	maxTCP, maxUDP int64
}

func newLimits() *limits { return &limits{maxTCP: 16384, maxUDP: 1024} }

func take(n *atomic.Int64, max int64) bool {
	if n.Add(1) > max {
		n.Add(-1)
		return false
	}
	return true
}

func (g *Gateway) startNAT() {
	tf := tcp.NewForwarder(g.s, 0, maxInFlightSYNs, g.forwardTCP)
	g.s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(g.s, g.forwardUDP)
	g.s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
}

// hostTarget says where on the host a connection from src to dst goes, or
// false when it must be refused.
func (g *Gateway) hostTarget(src netip.Addr, dst netip.AddrPort) (netip.AddrPort, bool) {
	ip := dst.Addr()
	v6 := g.cfg.IPv6
	switch {
	case g.cfg.Internal:
		return netip.AddrPort{}, false
	case ip == g.cfg.Gateway:
		return g.hostLoopback(src, netip.AddrFrom4([4]byte{127, 0, 0, 1}), dst.Port())
	case v6 != nil && ip == v6.Gateway:
		return g.hostLoopback(src, netip.IPv6Loopback(), dst.Port())
	case g.cfg.Subnet.Contains(ip), v6 != nil && v6.Subnet.Contains(ip),
		ip.IsLoopback(), ip.IsUnspecified(), ip.IsMulticast(), ip.IsLinkLocalUnicast(), ip.Is4In6(), ip == limitedBroadcast,
		ip.Is6() && v6 == nil:
		// Nothing of the host lives in the segment, the host's loopback
		// is reached only through the gateway's addresses (never spelled
		// as a v4-mapped address), and a segment without IPv6 has no IPv6
		// way out.
		return netip.AddrPort{}, false
	}
	return dst, true
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// hostLoopback is the host's loopback address lo at port, where src may
// reach it.
func (g *Gateway) hostLoopback(src, lo netip.Addr, port uint16) (netip.AddrPort, bool) {
	if _, member := g.loopbackFor.Load(src); !g.cfg.HostLoopback && !member {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(lo, port), true
}

// outboundAddr is the host address outbound connections to target are
// bound to, if one is configured for its family.
func (g *Gateway) outboundAddr(target netip.Addr) net.IP {
	a := g.cfg.OutboundAddr
	if target.Is6() {
		a = netip.Addr{}
		if g.cfg.IPv6 != nil {
			a = g.cfg.IPv6.OutboundAddr
		}
	}
	if !a.IsValid() {
		return nil
	}
	return a.AsSlice()
}

// forwardTCP runs in its own goroutine per SYN (gVisor starts it).
func (g *Gateway) forwardTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst := netip.AddrPortFrom(netipAddr(id.LocalAddress), id.LocalPort)
	target, ok := g.hostTarget(netipAddr(id.RemoteAddress), dst)
	if !ok || !take(&g.limit.tcp, g.limit.maxTCP) {
		g.refused(netipAddr(id.RemoteAddress), ok)
		g.log.Debug("refused outbound TCP", "dst", dst, "allowed", ok)
		r.Complete(true)
		return
	}
	defer g.limit.tcp.Add(-1)
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	var d net.Dialer
	if a := g.outboundAddr(target.Addr()); a != nil {
		d.LocalAddr = &net.TCPAddr{IP: a}
	}
	host, err := d.DialContext(ctx, "tcp", target.String())
	cancel()
	if err != nil {
		g.log.Debug("outbound TCP dial failed", "dst", target, "err", err)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		host.Close()
		return
	}
	r.Complete(false)
	relay.TCP(gonet.NewTCPConn(&wq, ep), host)
}

// forwardUDP runs on the packet path: it must not block.
func (g *Gateway) forwardUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	dst := netip.AddrPortFrom(netipAddr(id.LocalAddress), id.LocalPort)
	target, ok := g.hostTarget(netipAddr(id.RemoteAddress), dst)
	if !ok || !take(&g.limit.udp, g.limit.maxUDP) {
		g.refused(netipAddr(id.RemoteAddress), ok)
		g.log.Debug("refused outbound UDP", "dst", dst, "allowed", ok)
		return false
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		g.limit.udp.Add(-1)
		return false
	}
	inner := gonet.NewUDPConn(&wq, ep)
	go func() {
		defer g.limit.udp.Add(-1)
		var local *net.UDPAddr
		if a := g.outboundAddr(target.Addr()); a != nil {
			local = &net.UDPAddr{IP: a}
		}
		host, err := net.DialUDP("udp", local, net.UDPAddrFromAddrPort(target))
		if err != nil {
			g.log.Debug("outbound UDP dial failed", "dst", target, "err", err)
			inner.Close()
			return
		}
		relay.UDPFlow(inner, host, udpIdle)
	}()
	return true
}
