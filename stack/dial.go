package stack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"

	"github.com/netns-run/netns-run/stack/resolver"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

// source picks the address a connection to dst inside the segment comes
// from: the real client's, so the member sees who calls, except where the
// member could not answer it (loopback, the other family, the segment's own
// addresses): those come from the gateway, as docker-proxy makes every
// client appear.
func (g *Gateway) source(client, dst netip.Addr) netip.Addr {
	c := client.Unmap()
	if v6 := g.cfg.IPv6; v6 != nil && dst.Is6() {
		if !c.IsValid() || !c.Is6() || c.IsLoopback() || c.IsUnspecified() || c.IsMulticast() || c.IsLinkLocalUnicast() || v6.Subnet.Contains(c) {
			return v6.Gateway
		}
		return c
	}
	if !c.IsValid() || !c.Is4() || c.IsLoopback() || c.IsUnspecified() || c.IsMulticast() || g.cfg.Subnet.Contains(c) {
		return g.cfg.Gateway
	}
	return c
}

// DialTCP connects to dst inside the segment on behalf of client.
func (g *Gateway) DialTCP(ctx context.Context, client netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	local := tcpip.FullAddress{NIC: nicID, Addr: addr(g.source(client, dst.Addr()))}
	remote := tcpip.FullAddress{NIC: nicID, Addr: addr(dst.Addr()), Port: dst.Port()}
	c, err := gonet.DialTCPWithBind(ctx, g.s, local, remote, proto(dst.Addr()))
	if err != nil {
		// gonet keeps only the text of gVisor's error; a refusal is
		// made one that errors.Is ECONNREFUSED, as a kernel socket's.
		if strings.HasSuffix(err.Error(), (&tcpip.ErrConnectionRefused{}).String()) {
			return nil, fmt.Errorf("connect to %s in the sandbox: %w", dst, syscall.ECONNREFUSED)
		}
		return nil, fmt.Errorf("connect to %s in the sandbox: %w", dst, err)
	}
	return c, nil
}

// DialUDP opens a UDP flow to dst inside the segment on behalf of client.
func (g *Gateway) DialUDP(client netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	local := &tcpip.FullAddress{NIC: nicID, Addr: addr(g.source(client, dst.Addr()))}
	remote := &tcpip.FullAddress{NIC: nicID, Addr: addr(dst.Addr()), Port: dst.Port()}
	c, err := gonet.DialUDP(g.s, local, remote, proto(dst.Addr()))
	if err != nil {
		return nil, fmt.Errorf("open UDP flow to %s in the sandbox: %w", dst, err)
	}
	return c, nil
}

// Resolvers are the addresses the DNS proxy answers at: the resolver's,
// and with IPv6 its IPv6 one too.
func (g *Gateway) Resolvers() []netip.Addr {
	if g.cfg.IPv6 != nil {
		return []netip.Addr{g.cfg.Resolver, g.cfg.IPv6.Resolver}
	}
	return []netip.Addr{g.cfg.Resolver}
}

// ServeDNS has proxy answer on port 53, UDP and TCP, of every one of the
// Resolvers, until ctx ends; wg counts the serving goroutines. On an error
// the ones started already end with ctx.
func (g *Gateway) ServeDNS(ctx context.Context, wg *sync.WaitGroup, proxy *resolver.Proxy) error {
	for _, at := range g.Resolvers() {
		pc, ln, err := g.ListenResolver(at)
		if err != nil {
			return err
		}
		wg.Add(2)
		go func() { defer wg.Done(); proxy.ServePacket(ctx, pc) }()
		go func() { defer wg.Done(); proxy.ServeStream(ctx, ln) }()
	}
	return nil
}

// ListenResolver binds port 53 of one of the Resolvers, UDP and TCP, for
// the DNS proxy.
func (g *Gateway) ListenResolver(at netip.Addr) (net.PacketConn, net.Listener, error) {
	fa := tcpip.FullAddress{NIC: nicID, Addr: addr(at), Port: 53}
	pc, err := gonet.DialUDP(g.s, &fa, nil, proto(at))
	if err != nil {
		return nil, nil, fmt.Errorf("bind DNS %s/udp: %w", netip.AddrPortFrom(at, 53), err)
	}
	ln, err := gonet.ListenTCP(g.s, fa, proto(at))
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("bind DNS %s/tcp: %w", netip.AddrPortFrom(at, 53), err)
	}
	return pc, ln, nil
}
