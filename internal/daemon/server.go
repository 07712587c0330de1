// Package daemon is the per-user network host: one process, started on
// demand and gone when idle, that runs every shared segment (switch, gateway
// stack, DHCP, DNS) and serves the published ports of all their members;
// and its client (member sessions, lease sessions, one-shot requests,
// starting it on demand). A sandbox's supervisor holds a member session
// with it (internal/wire's Hello, Join, ...), which carries, once, the
// member's eth0 descriptor and, on the sandbox's first network, once its
// command runs, a dial channel into the sandbox (the loopback fast path of
// its published ports). A member of a kernel macvlan network, whose
// segment is the kernel's, holds a lease session instead: only its
// address.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/hosts"
	"github.com/netns-run/netns-run/internal/dialchan"
	"github.com/netns-run/netns-run/internal/ipam"
	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/seccomp"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/stack"
	"github.com/netns-run/netns-run/stack/segment"
	"golang.org/x/sys/unix"
)

// idleGrace is how long the daemon outlives its last member, so that a
// quick succession of runs does not restart it each time.
const idleGrace = 2 * time.Second

// SocketName is the member socket in the runtime dir.
const SocketName = "members.sock"

// Server is a running daemon.
type Server struct {
	store     *netstore.Store
	reg       *registry.Registry
	upstreams []netip.AddrPort
	log       *slog.Logger
	// memberLimits are Config's, for every segment this daemon runs.
	memberLimits stack.MemberLimits
	// dropFrames are the switches' last dropped frames, for the drop
	// lines (summarizeDrops).
	dropFrames *dropFrames

	mu       sync.Mutex
	segments map[string]*segment.Segment // by network ID
	members  map[string]*member          // by memberKey
	leases   int                         // lease sessions (Lease)
	idle     *time.Timer
	done     chan struct{}
}

// member is one attached (or joining) sandbox.
type member struct {
	join      wire.Join
	net       netstore.Network
	seg       *segment.Segment
	ip        netip.Addr
	ip6       netip.Addr // on a dual-stack network
	mac       net.HardwareAddr
	listeners []*forward.Listener
	fast      *dialchan.Dialer // the loopback fast path of the listeners
	ctx       context.Context
	cancel    context.CancelFunc
}

// Config is what a daemon serves from.
type Config struct {
	Store     *netstore.Store
	Registry  *registry.Registry
	Upstreams []netip.AddrPort
	Logger    *slog.Logger
	// MetricsAddr, if set, serves Prometheus metrics there (metrics.go).
	MetricsAddr string
	// MemberLimits bound what each member of a shared network may make
	// the daemon hold (stack.MemberLimits); zero fields take
	// stack.DefaultMemberLimits.
	MemberLimits stack.MemberLimits
}

// Serve runs the daemon on the runtime dir until it has been idle (no
// member) for a while. Only one daemon per user runs: a second returns nil
// at once.
func Serve(runtimeDir string, cfg Config) error {
	tuneGC(os.LookupEnv)
	lock, err := os.OpenFile(filepath.Join(runtimeDir, "daemon.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("daemon lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil // another daemon serves
	}
	// The syscall filter goes on once the daemon is set up, before the
	// first session is served (docs/ARCHITECTURE.md, Processes:
	// Hardening); where it must be compiled at run time, it compiles
	// meanwhile.
	filter := seccomp.Default(seccomp.Daemon)
	path := filepath.Join(runtimeDir, SocketName)
	os.Remove(path)
	ln, err := wire.Listen(path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	defer os.Remove(path)
	// A client can connect now: its join waits in the backlog while the
	// rest is set up.
	signalReady()
	s := &Server{
		store: cfg.Store, reg: cfg.Registry, upstreams: cfg.Upstreams, log: cfg.Logger, memberLimits: cfg.MemberLimits,
		segments: make(map[string]*segment.Segment), members: make(map[string]*member),
		dropFrames: &dropFrames{last: map[dropKey][]slog.Attr{}}, done: make(chan struct{}),
	}
	s.dropStaleLeases()
	stopDropLog := s.summarizeDrops()
	defer stopDropLog()
	// Before the filter: a unix socket of its own is not on its list.
	stopMetrics, err := s.serveMetrics(cfg.MetricsAddr)
	if err != nil {
		return err
	}
	defer stopMetrics()
	if err := filter.Install(s.log); err != nil {
		s.log.Warn("no syscall filter", "err", err)
	}
	s.mu.Lock()
	s.armIdle()
	s.mu.Unlock()
	go func() {
		<-s.done
		ln.Close()
	}()
	var wg sync.WaitGroup
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(c)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	for _, seg := range s.segments {
		seg.Close()
	}
	s.mu.Unlock()
	return nil
}

// armIdle starts the idle countdown when no member or lease is left;
// s.mu is held.
func (s *Server) armIdle() {
	if !s.idleNow() {
		if s.idle != nil {
			s.idle.Stop()
			s.idle = nil
		}
		return
	}
	if s.idle != nil {
		return
	}
	s.idle = time.AfterFunc(idleGrace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.idleNow() {
			select {
			case <-s.done:
			default:
				close(s.done)
			}
		}
	})
}

// idleNow: no session needs the daemon; s.mu is held.
func (s *Server) idleNow() bool { return len(s.members) == 0 && s.leases == 0 }

// dropStaleLeases forgets the addresses of sandboxes that are gone, so a
// restarted daemon frees them but never those of living members.
func (s *Server) dropStaleLeases() {
	recs, err := s.reg.List()
	if err != nil {
		s.log.Warn("cannot read sandbox records; keeping all leases", "err", err)
		return
	}
	alive := make(map[string]bool)
	for _, r := range recs {
		if r.State == registry.Running {
			alive[r.ID] = true
		}
	}
	nets, err := s.store.List()
	if err != nil {
		s.log.Warn("cannot list networks", "err", err)
		return
	}
	for _, n := range nets {
		leases, err := s.store.Leases(n.ID)
		if err != nil {
			continue
		}
		for id := range leases {
			if !alive[id] {
				s.store.DropLease(n.ID, id)
			}
		}
	}
}

// session serves one connection: a member's whole life, or one Request.
func (s *Server) session(c *net.UnixConn) {
	defer c.Close()
	if err := wire.CheckPeer(c); err != nil {
		s.log.Warn("refused a connection", "err", err)
		return
	}
	var hello wire.Hello
	fds, err := wire.Recv(c, &hello)
	if err == nil && hello.Capture != nil {
		s.capture(c, *hello.Capture, fds)
		return
	}
	wire.CloseFDs(fds)
	var bad *wire.DecodeError
	switch {
	case errors.As(err, &bad):
		wire.Send(c, wire.Reply{Error: bad.Error()})
		return
	case err != nil:
		return
	case hello.Lease != nil:
		s.lease(c, *hello.Lease)
		return
	case hello.Request != nil:
		wire.Send(c, s.request(*hello.Request))
		return
	}
	m, joined := s.join(*hello.Join)
	wire.Send(c, joined)
	if m == nil {
		return
	}
	s.logJoined(m)
	defer s.leave(m)
	var att wire.Attach
	fds, err = wire.Recv(c, &att)
	if err != nil || len(fds) != 1 {
		wire.CloseFDs(fds)
		return
	}
	if err := s.attach(m, fds[0]); err != nil {
		wire.Send(c, wire.Reply{Error: err.Error()})
		return
	}
	wire.Send(c, wire.Reply{Ports: m.ports()})
	for {
		var req wire.Request
		fds, err := wire.Recv(c, &req)
		if errors.As(err, &bad) {
			wire.Send(c, wire.Reply{Error: bad.Error()})
			continue
		}
		if err != nil {
			return
		}
		if req.DialChannel != nil {
			wire.Send(c, s.dialChannel(m, fds))
			continue
		}
		wire.CloseFDs(fds)
		wire.Send(c, s.changePorts(m, req))
	}
}

// lease serves a lease session: the address is held for as long as the
// connection lasts, then dropped, however its supervisor ended.
func (s *Server) lease(c *net.UnixConn, l wire.Lease) {
	n, err := s.store.Get(l.Network)
	if err == nil && n.Options[netstore.OptParent] == "" {
		err = fmt.Errorf("network %s is a segment served here: join it instead of leasing an address", n.Name)
	}
	var ip, ip6 netip.Addr
	if err == nil {
		ip, err = s.store.AllocateLease(n.ID, l.SandboxID, l.IP)
	}
	switch {
	case err != nil:
	case n.EnableIPv6:
		if ip6, err = s.store.AllocateLease6(n.ID, l.SandboxID, l.IP6); err != nil {
			s.store.DropLease(n.ID, l.SandboxID)
		}
	case l.IP6.IsValid():
		s.store.DropLease(n.ID, l.SandboxID)
		err = fmt.Errorf("--ip6 %s: network %s has no IPv6 (create it with --ipv6)", l.IP6, n.Name)
	}
	if err != nil {
		wire.Send(c, wire.Joined{Error: err.Error()})
		return
	}
	s.mu.Lock()
	s.leases++
	s.armIdle()
	s.mu.Unlock()
	s.logLease(n, l.SandboxID, ip, ip6, true)
	defer func() {
		if err := s.store.DropLease(n.ID, l.SandboxID); err != nil {
			s.log.Warn("drop lease", "sandbox", l.SandboxID, "err", err)
		}
		s.logLease(n, l.SandboxID, ip, ip6, false)
		s.mu.Lock()
		s.leases--
		s.armIdle()
		s.mu.Unlock()
	}()
	wire.Send(c, wire.Joined{Network: n, IP: ip, IP6: ip6})
	for {
		var ignored wire.Request
		fds, err := wire.Recv(c, &ignored)
		wire.CloseFDs(fds)
		if err != nil {
			return
		}
	}
}

// dialChannel takes the member's dial channel (fds, which it closes) for
// the loopback fast path of its published ports, or with none the news
// that none will come.
func (s *Server) dialChannel(m *member, fds []int) wire.Reply {
	if len(fds) > 1 || m.join.Secondary {
		wire.CloseFDs(fds)
		m.fast.Set(nil)
		return wire.Reply{Error: "a dial channel comes alone, on the session of the sandbox's first network"}
	}
	if len(fds) == 0 {
		m.fast.Set(nil)
		return wire.Reply{}
	}
	f := os.NewFile(uintptr(fds[0]), "dial-channel")
	err := m.fast.Set(f) // on error none: the gVisor path
	f.Close()
	if err != nil {
		return wire.Reply{Error: fmt.Sprintf("sandbox %s: %v", m.join.Name, err)}
	}
	return wire.Reply{}
}

// join reserves an address and binds the member's ports. What it took is
// given back, in reverse, when it fails: a segment it started for this
// member alone is closed again.
func (s *Server) join(j wire.Join) (m *member, joined wire.Joined) {
	fail := func(err error) (*member, wire.Joined) { return nil, wire.Joined{Error: err.Error()} }
	n, err := s.store.Get(j.Network)
	if err != nil {
		return fail(err)
	}
	if n.Driver == netstore.DriverMacvlan && n.Options[netstore.OptParent] != "" {
		return fail(fmt.Errorf("network %s has a kernel macvlan parent (%s); that needs privileges and is not served by the userspace daemon", n.Name, n.Options[netstore.OptParent]))
	}
	if j.Secondary && (len(j.Ports) > 0 || j.FastPath) {
		return fail(fmt.Errorf("ports are published on a sandbox's first network"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var undo []func()
	defer func() {
		if m == nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if _, dup := s.members[memberKey(j.SandboxID, n.ID)]; dup {
		return fail(fmt.Errorf("sandbox %s is already on network %s", j.Name, n.Name))
	}
	seg, err := s.segment(n)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() {
		if !s.onSegment(seg) {
			delete(s.segments, n.ID)
			go seg.Close() // not under s.mu, as leave does
		}
	})
	linkHosts, err := s.links(seg, n, j.Links)
	if err != nil {
		return fail(err)
	}
	ip, err := s.store.AllocateLease(n.ID, j.SandboxID, j.IP)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { s.store.DropLease(n.ID, j.SandboxID) })
	var ip6 netip.Addr
	switch {
	case n.EnableIPv6:
		if ip6, err = s.store.AllocateLease6(n.ID, j.SandboxID, j.IP6); err != nil {
			return fail(err)
		}
	case j.IP6.IsValid():
		return fail(fmt.Errorf("--ip6 %s: network %s has no IPv6 (create it with --ipv6)", j.IP6, n.Name))
	}
	mac := ipam.MAC(ip)
	if j.MAC != "" {
		if mac, err = net.ParseMAC(j.MAC); err != nil {
			return fail(fmt.Errorf("invalid --mac-address %q: %v", j.MAC, err))
		}
	}
	ls, err := forward.Bind(j.Ports)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() {
		for _, l := range ls {
			l.Close()
		}
	})
	// To the sandbox's 127.0.0.1 first, then to the member's own address,
	// for a server bound only to it; through the channel its supervisor
	// sends once the command runs (Join.FastPath), or none.
	fast, err := dialchan.New(nil, netip.MustParseAddr("127.0.0.1"), ip)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m = &member{join: j, net: n, seg: seg, ip: ip, ip6: ip6, mac: mac, listeners: ls, fast: fast, ctx: ctx, cancel: cancel}
	if j.FastPath {
		m.fast.Expect()
	}
	s.members[memberKey(j.SandboxID, n.ID)] = m
	s.armIdle()
	return m, wire.Joined{Network: n, IP: ip, IP6: ip6, MAC: mac.String(), Ports: m.ports(), LinkHosts: linkHosts}
}

// segment returns the running segment of n, starting it; s.mu is held.
func (s *Server) segment(n netstore.Network) (*segment.Segment, error) {
	if seg, ok := s.segments[n.ID]; ok {
		return seg, nil
	}
	seg, err := segment.New(segment.Config{
		Name:       n.Name,
		Subnet:     n.Subnet,
		Gateway:    n.Gateway,
		Subnet6:    n.Subnet6,
		Gateway6:   n.Gateway6,
		GatewayMAC: ipam.MAC(n.Gateway),
		Isolate:    n.Options[netstore.OptMacvlanMode] == "private",
		Internal:   n.Internal,
		// As Docker: only user-defined networks resolve member names.
		MemberNames: !n.BuiltIn(),
		Upstreams:   s.upstreams,
		// Zero fields: the defaults, so that no member goes unbounded.
		MemberLimits: s.memberLimits.Over(stack.DefaultMemberLimits),
		Logger:       s.log,
		OnDrop:       s.dropFrames.onDrop(n.Name),
	})
	if err != nil {
		return nil, err
	}
	s.segments[n.ID] = seg
	return seg, nil
}

// links renders --link entries as Docker writes them: IP ALIAS ID NAME.
func (s *Server) links(seg *segment.Segment, n netstore.Network, links []wire.LinkedName) ([]hosts.Entry, error) {
	var out []hosts.Entry
	for _, l := range links {
		var target *member
		for _, m := range s.members {
			if m.seg == seg && (m.join.Name == l.Name || m.join.SandboxID == l.Name) {
				target = m
			}
		}
		if target == nil {
			return nil, fmt.Errorf("cannot link to %s: no running sandbox of that name on network %s", l.Name, n.Name)
		}
		short := target.join.SandboxID[:12]
		names := []string{target.join.Name, short}
		if l.Alias != "" {
			names = []string{l.Alias, short, target.join.Name}
		}
		out = append(out, hosts.Entry{IP: target.ip, Names: names})
	}
	return out, nil
}

// attach connects the member's eth0 and starts serving its ports.
func (s *Server) attach(m *member, fd int) error {
	names := append([]string{}, m.join.Aliases...)
	for _, l := range m.join.Links {
		if l.Alias != "" {
			names = append(names, l.Alias)
		}
	}
	err := m.seg.Add(segment.Member{ID: m.join.SandboxID, Name: m.join.Name, IP: m.ip, IP6: m.ip6, MAC: m.mac, Aliases: names, DNS: m.join.DNS}, fd)
	if err != nil {
		return err
	}
	if m.join.HostLoopback {
		m.seg.Gateway().AllowHostLoopback(m.ip, true)
	}
	for _, l := range m.listeners {
		go l.Serve(m.ctx, forward.Member{IP: m.ip, IP6: m.ip6, Counts: m.seg.Published(m.join.SandboxID)}, m.seg.Gateway(), m.fast)
	}
	return nil
}

// memberKey names one sandbox's place on one network.
func memberKey(sandboxID, networkID string) string { return sandboxID + "/" + networkID }

// leave releases everything the member held, and closes the segment when
// it was the last member there: the next member starts it anew.
func (s *Server) leave(m *member) {
	s.logLeft(m)
	m.cancel()
	m.fast.Close()
	s.mu.Lock()
	for _, l := range m.listeners {
		l.Close()
	}
	m.seg.Gateway().AllowHostLoopback(m.ip, false)
	m.seg.Remove(m.join.SandboxID)
	if err := s.store.DropLease(m.net.ID, m.join.SandboxID); err != nil {
		s.log.Warn("drop lease", "sandbox", m.join.SandboxID, "err", err)
	}
	delete(s.members, memberKey(m.join.SandboxID, m.net.ID))
	last := !s.onSegment(m.seg)
	if last {
		delete(s.segments, m.net.ID)
	}
	s.armIdle()
	s.mu.Unlock()
	if last {
		// Outside the lock: stopping the stack waits for its goroutines.
		m.seg.Close()
	}
}

// onSegment reports whether any member, joining or attached, is on seg;
// s.mu is held.
func (s *Server) onSegment(seg *segment.Segment) bool {
	for _, m := range s.members {
		if m.seg == seg {
			return true
		}
	}
	return false
}

func (m *member) ports() []forward.Mapping {
	out := make([]forward.Mapping, 0, len(m.listeners))
	for _, l := range m.listeners {
		out = append(out, l.Mapping())
	}
	return out
}

// request serves a one-shot request about a member of another session.
func (s *Server) request(r wire.Request) wire.Reply {
	if r.Stats != nil {
		return s.stats()
	}
	s.mu.Lock()
	var m *member
	for _, cand := range s.members {
		if cand.join.SandboxID == r.SandboxID && !cand.join.Secondary {
			m = cand
		}
	}
	s.mu.Unlock()
	if m == nil {
		return wire.Reply{Error: fmt.Sprintf("sandbox %s is not on a network served here", r.SandboxID)}
	}
	if r.DialChannel != nil {
		return wire.Reply{Error: "a dial channel comes on the member's own session"}
	}
	return s.changePorts(m, r)
}

// changePorts adds and removes published ports of a running member.
func (s *Server) changePorts(m *member, r wire.Request) wire.Reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rm := range r.RemovePorts {
		kept := m.listeners[:0]
		found := false
		for _, l := range m.listeners {
			if samePort(l.Mapping(), rm) {
				l.Close()
				found = true
				continue
			}
			kept = append(kept, l)
		}
		m.listeners = kept
		if !found {
			return wire.Reply{Error: fmt.Sprintf("%s is not published", rm), Ports: m.ports()}
		}
	}
	added, err := forward.Bind(r.AddPorts)
	if err != nil {
		return wire.Reply{Error: err.Error(), Ports: m.ports()}
	}
	for _, l := range added {
		go l.Serve(m.ctx, forward.Member{IP: m.ip, IP6: m.ip6, Counts: m.seg.Published(m.join.SandboxID)}, m.seg.Gateway(), m.fast)
	}
	m.listeners = append(m.listeners, added...)
	s.logPorts(m, added, r.RemovePorts)
	return wire.Reply{Ports: m.ports()}
}

// samePort matches a mapping to remove; an unset host port or address
// matches any.
func samePort(have, want forward.Mapping) bool {
	return have.ContainerPort == want.ContainerPort && have.Proto == want.Proto &&
		(want.HostPort == 0 || have.HostPort == want.HostPort) &&
		(!want.HostIP.IsValid() || have.HostIP == want.HostIP)
}
