// Package forward carries host-side traffic into a sandbox and out of it:
// published ports (-p: the grammar, the host listeners, TCP and UDP, each
// client dialled into the sandbox through a Dialer or, for loopback
// clients, a LocalDialer) and the sandbox's loopback ports forwarded to the
// host's (-T).
package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/forward/relay"
)

const (
	dialTimeout = 5 * time.Second
	// udpIdle ends a client's flow, as docker-proxy's UDP timeout does.
	udpIdle = 60 * time.Second
	// udpIdleSlack is how stale a flow's idle deadline may get before it
	// is pushed back: on gVisor's side each push stops and makes a timer,
	// too dear for every datagram.
	udpIdleSlack = time.Second
	// maxUDPFlows bounds the clients one published UDP port tracks.
	maxUDPFlows = 1024
)

// Dialer reaches a member inside the segment on behalf of a host-side
// client, whose address the member should see where that is possible.
type Dialer interface {
	DialTCP(ctx context.Context, client netip.Addr, dst netip.AddrPort) (net.Conn, error)
	DialUDP(client netip.Addr, dst netip.AddrPort) (net.Conn, error)
}

// LocalDialer connects to a member's TCP port from inside the member's own
// network namespace (the loopback fast path). The connection is a kernel
// socket, so the relay moves bytes kernel to kernel (splice) and never
// through the gVisor stack. A refusal must come back as an error that
// errors.Is syscall.ECONNREFUSED.
type LocalDialer interface {
	DialLocal(ctx context.Context, port uint16) (net.Conn, error)
}

// nowDialer is a LocalDialer that can also connect without waiting
// (dialchan's): the relay's event loop then accepts the port's clients
// and relays the loopback ones itself, with no goroutine per
// connection; false sends a client the usual way.
type nowDialer interface {
	DialLocalNow(port uint16) (net.Conn, bool)
}

// Listener is one published port bound on the host.
type Listener struct {
	m   Mapping // HostPort is the bound one, also when asked for 0
	tcp net.Listener
	udp *net.UDPConn

	mu       sync.Mutex
	closed   chan struct{} // closed by Close
	stopLoop func()        // while the relay's event loop accepts for tcp
}

// Bind binds every mapping on the host, or none: on the first failure the
// ones already bound are closed again.
func Bind(ms []Mapping) ([]*Listener, error) {
	var ls []*Listener
	for _, m := range ms {
		l, err := bind(m)
		if err != nil {
			for _, done := range ls {
				done.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// bind binds m, or for a host port range the first free port in it, as
// Docker does for -p 8000-8010:80.
func bind(m Mapping) (*Listener, error) {
	if m.HostPortEnd == 0 {
		return bindPort(m)
	}
	var first error
	for p := int(m.HostPort); p <= int(m.HostPortEnd); p++ {
		one := m
		one.HostPort, one.HostPortEnd = uint16(p), 0
		l, err := bindPort(one)
		if err == nil {
			return l, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, fmt.Errorf("cannot publish %s: no free host port in %d-%d (first failure: %v)", m, m.HostPort, m.HostPortEnd, first)
}

func bindPort(m Mapping) (*Listener, error) {
	host := ""
	if m.HostIP.IsValid() {
		host = m.HostIP.String()
	}
	addr := net.JoinHostPort(host, fmt.Sprint(m.HostPort))
	l := &Listener{m: m, closed: make(chan struct{})}
	var err error
	var port int
	if m.Proto == UDP {
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp", addr)
		if err == nil {
			l.udp = pc.(*net.UDPConn)
			port = l.udp.LocalAddr().(*net.UDPAddr).Port
		}
	} else {
		l.tcp, err = net.Listen("tcp", addr)
		if err == nil {
			port = l.tcp.Addr().(*net.TCPAddr).Port
		}
	}
	if err != nil {
		return nil, bindError(m, err)
	}
	l.m.HostPort = uint16(port)
	return l, nil
}

func bindError(m Mapping, err error) error {
	what := m.String()
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("cannot publish %s: host port %d/%s is already in use; choose another host port, or leave it out to get a free one", what, m.HostPort, m.Proto)
	case errors.Is(err, syscall.EACCES):
		start := "1024"
		if b, rerr := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); rerr == nil {
			start = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("cannot publish %s: host ports below %s need privileges; choose a higher host port (or lower sysctl net.ipv4.ip_unprivileged_port_start)", what, start)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("cannot publish %s: %s is not an address of this host", what, m.HostIP)
	}
	return fmt.Errorf("cannot publish %s: %w", what, err)
}

// Mapping is what this listener publishes, with the bound host port.
func (l *Listener) Mapping() Mapping { return l.m }

// Close stops listening: the port is free again when it returns.
func (l *Listener) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
		return
	default:
	}
	close(l.closed)
	if l.stopLoop != nil {
		l.stopLoop() // the loop's duplicate of the socket goes first
	}
	if l.tcp != nil {
		l.tcp.Close()
	}
	if l.udp != nil {
		l.udp.Close()
	}
}

// Member is where a published port leads: the member's IPv4 address, and
// on a dual-stack network its IPv6 one; Counts, when set, counts its
// published ports' traffic.
type Member struct {
	IP, IP6 netip.Addr
	Counts  *Counters
}

// addrFor is the member's address for client: IPv6 clients reach a
// dual-stack member over IPv6 (serveTCP falls back to IPv4 when nothing
// listens there), every other client over IPv4, as Docker's proxy does.
func (m Member) addrFor(client netip.Addr) netip.Addr {
	if m.IP6.IsValid() && client.Is6() && !client.Is4In6() {
		return m.IP6
	}
	return m.IP
}

// Serve forwards clients to member until ctx ends, then closes the
// listener and returns once it is closed. Connections already relayed
// run until either side ends them.
//
// local, when not nil, is a fast path: TCP clients on the host's loopback
// (127.0.0.0/8, ::1), which d would make appear as the gateway anyway, are
// served through local; the member then sees them come from its own
// loopback. Every other client goes through d and keeps its address. A
// refusal from local closes the client, as d's would; any other failure of
// local (the sandbox is ending) falls back to d. UDP always goes through d:
// a flow through a socket made inside measured no faster (the per-datagram
// cost is this process's read and write either way) and would cost a round
// trip to the sandbox per flow.
func (l *Listener) Serve(ctx context.Context, member Member, d Dialer, local LocalDialer) {
	stop := context.AfterFunc(ctx, l.Close)
	defer func() {
		if !stop() {
			l.Close() // returns once the close that ctx began is over
		}
	}()
	if l.udp != nil {
		l.serveUDP(member, d)
		return
	}
	l.serveTCP(ctx, member, d, local)
}

// isLoopback: a TCP client the fast path serves.
func isLoopback(a netip.Addr) bool { return a.Unmap().IsLoopback() }

func (l *Listener) serveTCP(ctx context.Context, member Member, d Dialer, local LocalDialer) {
	dial := func(c net.Conn) (net.Conn, Path, error) {
		client := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		dst := netip.AddrPortFrom(member.addrFor(client), l.m.ContainerPort)
		inner, path, err := dialTCP(dctx, d, local, client, dst)
		if dst.Addr() != member.IP && errors.Is(err, syscall.ECONNREFUSED) {
			// Nothing listens on the member's IPv6 side (a server
			// bound to 0.0.0.0): over IPv4 then, as a client of a
			// dual-stack host would try.
			return dialTCP(dctx, d, local, client, netip.AddrPortFrom(member.IP, l.m.ContainerPort))
		}
		return inner, path, err
	}
	if now, ok := local.(nowDialer); ok && l.acceptOnLoop(now, member.Counts, dial) {
		<-l.closed
		return
	}
	relayCounted(l.tcp, member.Counts, dial)
}

// acceptOnLoop has the relay's event loop accept l's clients, where a
// loopback client that now connects without waiting is relayed there and
// then, with no goroutine, no wakeup of one, and none of the calls Go's
// Accept makes (Measured facts: Event-loop relay); every other client
// goes to dial in a goroutine of its own, as relayCounted's do. False:
// the loop cannot take l (l is then served by relayCounted).
func (l *Listener) acceptOnLoop(now nowDialer, counts *Counters, dial func(client net.Conn) (net.Conn, Path, error)) bool {
	ln, ok := l.tcp.(*net.TCPListener)
	if !ok {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
		return true
	default:
	}
	stop, err := relay.AcceptOnLoop(ln, func(fd int, peer netip.AddrPort) {
		client := relay.NewSocket(fd)
		if isLoopback(peer.Addr()) {
			if inner, ok := now.DialLocalNow(l.m.ContainerPort); ok {
				relayCountedPair(client, inner, counts, Fast)
				return
			}
		}
		go relaySlow(client, counts, dial)
	})
	if err != nil {
		return false
	}
	l.stopLoop = stop
	return true
}

// relaySlow serves a client the loop accepted the way relayCounted serves
// its own: as a *net.TCPConn with Go's keep-alive settings (probes after
// 15 s idle), through dial.
func relaySlow(client *relay.Socket, counts *Counters, dial func(client net.Conn) (net.Conn, Path, error)) {
	c, err := client.Conn()
	if err != nil {
		client.Close()
		return
	}
	c.(*net.TCPConn).SetKeepAliveConfig(net.KeepAliveConfig{Enable: true})
	relayDialled(c, counts, dial)
}

// relayAccepted accepts on ln until it is closed and relays each client to
// the connection dial makes for it; a client it cannot make one for is
// closed.
func relayAccepted(ln net.Listener, dial func(client net.Conn) (net.Conn, error)) {
	relayCounted(ln, nil, func(c net.Conn) (net.Conn, Path, error) {
		inner, err := dial(c)
		return inner, GVisor, err
	})
}

// relayCounted is relayAccepted counting each connection in counts (when
// set) under the path it took.
func relayCounted(ln net.Listener, counts *Counters, dial func(client net.Conn) (net.Conn, Path, error)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: back off
			continue
		}
		go relayDialled(c, counts, dial)
	}
}

// relayDialled relays client to the connection dial makes for it, or
// closes it.
func relayDialled(client net.Conn, counts *Counters, dial func(client net.Conn) (net.Conn, Path, error)) {
	inner, path, err := dial(client)
	if err != nil {
		client.Close()
		return
	}
	relayCountedPair(client, inner, counts, path)
}

// relayCountedPair relays client and inner, counting the connection and
// its bytes under path.
func relayCountedPair(client, inner net.Conn, counts *Counters, path Path) {
	counts.tcpConn(path)
	relay.TCPThen(client, inner, func(in, out int64) {
		counts.tcpBytes(path, uint64(in), uint64(out))
	})
}

// dialTCP reaches dst for client: through local for a loopback client,
// else (or when local fails for another reason than a refusal) through d.
func dialTCP(ctx context.Context, d Dialer, local LocalDialer, client netip.Addr, dst netip.AddrPort) (net.Conn, Path, error) {
	if local != nil && isLoopback(client) {
		c, err := local.DialLocal(ctx, dst.Port())
		if err == nil || errors.Is(err, syscall.ECONNREFUSED) || ctx.Err() != nil {
			return c, Fast, err
		}
	}
	c, err := d.DialTCP(ctx, client, dst)
	return c, GVisor, err
}

// udpFlow is one client's conversation with the member.
type udpFlow struct {
	inner net.Conn
	// pushed is when the idle deadline was last set (unix nanoseconds),
	// by the client's datagrams or the member's.
	pushed atomic.Int64
}

// active pushes the flow's idle deadline back, at most once a second.
func (f *udpFlow) active() {
	now := time.Now()
	if last := f.pushed.Load(); now.UnixNano()-last < int64(udpIdleSlack) || !f.pushed.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	f.inner.SetReadDeadline(now.Add(udpIdle))
}

func (l *Listener) serveUDP(member Member, d Dialer) {
	var mu sync.Mutex
	flows := make(map[netip.AddrPort]*udpFlow)
	buf := make([]byte, 65535)
	for {
		n, client, err := l.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				mu.Lock()
				for _, f := range flows {
					f.inner.Close()
				}
				mu.Unlock()
				return
			}
			continue
		}
		mu.Lock()
		f := flows[client]
		if f == nil && len(flows) < maxUDPFlows {
			dst := netip.AddrPortFrom(member.addrFor(client.Addr()), l.m.ContainerPort)
			inner, err := d.DialUDP(client.Addr(), dst)
			if err == nil {
				member.Counts.udpFlow()
				f = &udpFlow{inner: inner}
				flows[client] = f
				go l.replies(client, f, member.Counts, func() {
					mu.Lock()
					delete(flows, client)
					mu.Unlock()
				})
			}
		}
		if f != nil {
			f.active() // traffic from the client keeps the flow alive too
			if _, err := f.inner.Write(buf[:n]); err == nil {
				member.Counts.udpBytes(n, true)
			}
		}
		mu.Unlock()
	}
}

// replies sends the member's datagrams back to client until the flow has
// been idle for udpIdle.
func (l *Listener) replies(client netip.AddrPort, f *udpFlow, counts *Counters, forget func()) {
	defer f.inner.Close()
	defer forget()
	buf := make([]byte, 65535)
	f.active()
	for {
		n, err := f.inner.Read(buf)
		if err != nil {
			return
		}
		f.active()
		_, err = l.udp.WriteToUDPAddrPort(buf[:n], client)
		if err == nil {
			counts.udpBytes(n, false)
		} else if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}
