// Package ethswitch is the L2 switch of a segment: its ports are the members'
// TAP fds (raw Ethernet frames, IFF_TAP|IFF_NO_PI, no virtio header) plus the
// gateway's gVisor NIC.
//
// The MAC table is known up front (from IPAM, given at AddPort): there is no
// learning, no STP, and unknown unicast is dropped, never flooded. Frames
// between members go fd to fd without touching gVisor; frames to the gateway
// MAC are delivered to the gVisor NIC built on GatewayEndpoint; broadcast and
// multicast go to every other member (unless Isolate) and to the gateway.
// Every member frame is checked against the port's own MAC and IPv4 address,
// and its IPv6 addresses (ipv6.go), before it goes anywhere (anti-spoofing).
//
// Concurrency: one goroutine per port reads its fd through the Go runtime
// poller and forwards each frame on that goroutine (gateway-bound frames are
// processed by gVisor inline, as fdbased does with one processor). The port
// table is copy-on-write behind an atomic pointer, so the hot path takes no
// switch-wide lock; each port has a reusable read buffer and frames between
// members cost no allocation.
package ethswitch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Member is one sandbox on the segment.
type Member struct {
	MAC net.HardwareAddr
	IP  netip.Addr // IPv4
	// IP6 is the member's IPv6 address on a dual-stack segment; its
	// link-local address (made from MAC) is its own without it too.
	IP6 netip.Addr
	// FD is the member's TAP fd (or any fd carrying one Ethernet frame per
	// read/write, e.g. a SOCK_SEQPACKET socket). The switch owns it from
	// the AddPort call on, also when AddPort fails, and closes it on
	// RemovePort or Close.
	FD int
}

// Options configure a Switch.
type Options struct {
	// GatewayMAC is the MAC of the gateway NIC (the gVisor stack).
	GatewayMAC net.HardwareAddr
	// MTU is the IP MTU of the segment (frames may be MTU+14 bytes). It
	// must be between 68 and 65521 (65520 is the recommended value for TAPs).
	MTU uint32
	// Isolate is macvlan "private" mode: members cannot reach each other,
	// only the gateway (broadcasts from a member reach only the gateway).
	Isolate bool
	// DHCP, when set, is called (on the member's reader goroutine) with the
	// UDP payload of each DHCP client frame (UDP 68 -> 67, to the broadcast
	// address or GatewayIP) a member sends. Such frames are consumed: they
	// reach neither the other members nor gVisor. A reply is wrapped in
	// Ethernet/IPv4/UDP from GatewayMAC/GatewayIP:67 to port 68 and written
	// to that member only. The Member passed has FD -1 and its own copy of
	// the MAC. The hook must not call RemovePort or Close.
	DHCP func(req []byte, m Member) (reply []byte, ok bool)
	// GatewayIP is the gateway's IPv4 address: the source of DHCP replies
	// (required with DHCP); no member may have it.
	GatewayIP netip.Addr
	// Logger gets drops at debug level (rate-limited per port) and port
	// failures at warn. Defaults to slog.Default().
	Logger *slog.Logger
	// OnDrop, when set, gets the drop reports instead of Logger: the same
	// ones, while Logger has debug on, at most one per port each logEvery.
	// It is called on the port's reader goroutine and must not block.
	OnDrop func(Drop)
}

// Drop reports a dropped frame: the port's member (its MAC), why, the
// frame's addresses (and the write's error, for a frame toward the
// member), and how many drops of the port went unreported since the last
// report.
type Drop struct {
	Member, Reason string
	Frame          []slog.Attr
	Suppressed     uint64
}

// Switch is an L2 switch with a static MAC table. Its methods are safe for
// concurrent use.
type Switch struct {
	opts     Options
	log      *slog.Logger
	gwIP     [4]byte
	frameMax int // largest accepted frame: MTU + Ethernet header
	bufSize  int // per-port read buffer: frameMax+1 to detect oversize

	mu     sync.Mutex // serialises AddPort, RemovePort, Close, SetLinkAddress
	closed bool
	tbl    atomic.Pointer[table]

	gw *gatewayEndpoint

	// taps are the captures running (nil: none); tapKeys, under mu, names
	// each for its removal.
	taps    atomic.Pointer[taps]
	tapKeys []*byte

	// retired keeps the counters of removed ports for Stats.
	retired counters
}

// table is the switch's port table. It is never modified once published:
// writers build a new one under Switch.mu and swap the pointer.
type table struct {
	gwMAC  [6]byte
	gwLink tcpip.LinkAddress // gwMAC, for gVisor
	byMAC  map[[6]byte]*port
	byIP   map[[4]byte]*port
	byIP6  map[[16]byte]*port // members' IPv6 and link-local addresses
	ports  []*port
}

const (
	ethHdrLen = header.EthernetMinimumSize
	minMTU    = 68
	// maxMTU keeps the largest frame plus one byte of oversize detection
	// within gVisor's largest pooled buffer chunk (64 KiB).
	maxMTU = 65536 - ethHdrLen - 1
)

// New makes a switch with no ports. Attach the gateway by creating a gVisor
// NIC on GatewayEndpoint.
func New(opts Options) (*Switch, error) {
	if len(opts.GatewayMAC) != 6 || opts.GatewayMAC[0]&1 != 0 {
		return nil, fmt.Errorf("ethswitch: gateway MAC %q is not a unicast Ethernet address", opts.GatewayMAC)
	}
	if opts.MTU < minMTU || opts.MTU > maxMTU {
		return nil, fmt.Errorf("ethswitch: MTU %d out of range [%d, %d]", opts.MTU, minMTU, maxMTU)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Switch{
		opts:     opts,
		log:      opts.Logger,
		frameMax: int(opts.MTU) + ethHdrLen,
	}
	s.bufSize = s.frameMax + 1
	if ip := opts.GatewayIP.Unmap(); ip.Is4() && !ip.IsUnspecified() {
		s.gwIP = ip.As4()
	} else if opts.DHCP != nil {
		return nil, fmt.Errorf("ethswitch: DHCP needs an IPv4 GatewayIP, have %v", opts.GatewayIP)
	}
	t := &table{byMAC: map[[6]byte]*port{}, byIP: map[[4]byte]*port{}, byIP6: map[[16]byte]*port{}}
	copy(t.gwMAC[:], opts.GatewayMAC)
	t.gwLink = tcpip.LinkAddress(t.gwMAC[:])
	s.tbl.Store(t)
	s.gw = newGatewayEndpoint(s)
	return s, nil
}

// GatewayEndpoint is the link endpoint to create the gateway's gVisor NIC
// on. It speaks Ethernet (CapabilityResolutionRequired, so gVisor runs ARP);
// its MTU is Options.MTU and its link address Options.GatewayMAC:
//
//	ep := sw.GatewayEndpoint()
//	s.CreateNICWithOptions(nicID, ep, stack.NICOptions{QDisc: fifo.New(ep, 1, 1000)})
//	s.SetPromiscuousMode(nicID, true); s.SetSpoofing(nicID, true)
//
// The fifo qdisc moves writes toward members off gVisor's TCP goroutines,
// as with fdbased (2x at MTU 1500 toward members in BenchmarkTAPTCP).
func (s *Switch) GatewayEndpoint() stack.LinkEndpoint { return s.gw }

// AddPort connects a member. It fails on a duplicate MAC, IP or IP6, on a
// MAC that is not unicast or is the gateway's, on an IP that is not IPv4
// (or is GatewayIP), on an IP6 that is not a unicast IPv6 address, and
// after Close. The switch owns m.FD from this call on: it
// sets it nonblocking, and closes it when AddPort fails, on RemovePort and on
// Close. If the fd fails (EOF, or the sandbox's namespace is gone) the
// port's reader stops and logs; the port stays until RemovePort.
func (s *Switch) AddPort(m Member) (err error) {
	defer func() {
		if err != nil {
			unix.Close(m.FD)
		}
	}()
	if len(m.MAC) != 6 || m.MAC[0]&1 != 0 {
		return fmt.Errorf("ethswitch: member MAC %q is not a unicast Ethernet address", m.MAC)
	}
	ip := m.IP.Unmap()
	if !ip.Is4() || ip.IsUnspecified() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fmt.Errorf("ethswitch: member %s: IP %v is not a usable IPv4 address", m.MAC, m.IP)
	}
	if m.FD < 0 {
		return fmt.Errorf("ethswitch: member %s: bad fd %d", m.MAC, m.FD)
	}
	if a := m.IP6; a.IsValid() && (!a.Is6() || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsLoopback()) {
		return fmt.Errorf("ethswitch: member %s: IPv6 %v is not a usable unicast address", m.MAC, a)
	}
	var mac [6]byte
	copy(mac[:], m.MAC)
	ip4 := ip.As4()
	ip6, ll := ip6Key(m.IP6), linkLocal(mac)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("ethswitch: switch is closed")
	}
	old := s.tbl.Load()
	if mac == old.gwMAC {
		return fmt.Errorf("ethswitch: member MAC %s is the gateway's", m.MAC)
	}
	if _, dup := old.byMAC[mac]; dup {
		return fmt.Errorf("ethswitch: duplicate MAC %s", m.MAC)
	}
	if _, dup := old.byIP[ip4]; dup {
		return fmt.Errorf("ethswitch: duplicate IP %s", ip)
	}
	if ip4 == s.gwIP {
		return fmt.Errorf("ethswitch: member IP %s is the gateway's", ip)
	}
	if _, dup := old.byIP6[ip6]; dup && ip6 != [16]byte{} {
		return fmt.Errorf("ethswitch: duplicate IPv6 %s", m.IP6)
	}
	// A nonblocking fd makes os.NewFile register it with the runtime
	// poller: reads park the goroutine instead of a thread, and Close
	// wakes a pending read.
	if err := unix.SetNonblock(m.FD, true); err != nil {
		return fmt.Errorf("ethswitch: member %s: fd %d: %w", m.MAC, m.FD, err)
	}
	p := &port{
		sw:    s,
		mac:   mac,
		ip:    ip4,
		ip6:   ip6,
		ll:    ll,
		name:  net.HardwareAddr(mac[:]).String(),
		fd:    m.FD,
		done:  make(chan struct{}),
		flood: rate.NewLimiter(floodPerSecond, floodBurst),
	}
	p.f = os.NewFile(uintptr(m.FD), "ethswitch:"+p.name)
	if p.f == nil {
		return fmt.Errorf("ethswitch: member %s: bad fd %d", m.MAC, m.FD)
	}
	t := old.clone()
	t.byMAC[mac] = p
	t.byIP[ip4] = p
	t.byIP6[ll] = p
	if ip6 != [16]byte{} {
		t.byIP6[ip6] = p
	}
	t.ports = append(t.ports, p)
	s.tbl.Store(t)
	go p.run()
	return nil
}

// RemovePort disconnects the member with MAC mac, if any: no frame goes to
// or comes from it once RemovePort returns, and its fd is closed.
func (s *Switch) RemovePort(mac net.HardwareAddr) {
	if len(mac) != 6 {
		return
	}
	var key [6]byte
	copy(key[:], mac)
	s.mu.Lock()
	old := s.tbl.Load()
	p, ok := old.byMAC[key]
	if !ok {
		s.mu.Unlock()
		return
	}
	t := old.clone()
	delete(t.byMAC, key)
	delete(t.byIP, p.ip)
	delete(t.byIP6, p.ip6)
	delete(t.byIP6, p.ll)
	t.ports = t.ports[:0]
	for _, q := range old.ports {
		if q != p {
			t.ports = append(t.ports, q)
		}
	}
	s.tbl.Store(t)
	s.mu.Unlock()

	p.shutdown()
	s.retired.add(&p.cnt)
}

// Close removes every port (closing their fds) and makes AddPort fail. The
// gateway endpoint stays valid but reaches no one; close the gVisor stack
// separately (in either order).
func (s *Switch) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	old := s.tbl.Load()
	t := &table{gwMAC: old.gwMAC, gwLink: old.gwLink, byMAC: map[[6]byte]*port{}, byIP: map[[4]byte]*port{}, byIP6: map[[16]byte]*port{}}
	s.tbl.Store(t)
	s.mu.Unlock()
	for _, p := range old.ports {
		p.shutdown()
		s.retired.add(&p.cnt)
	}
}

func (t *table) clone() *table {
	n := &table{
		gwMAC:  t.gwMAC,
		gwLink: t.gwLink,
		byMAC:  make(map[[6]byte]*port, len(t.byMAC)+1),
		byIP:   make(map[[4]byte]*port, len(t.byIP)+1),
		byIP6:  make(map[[16]byte]*port, len(t.byIP6)+2),
		ports:  make([]*port, len(t.ports), len(t.ports)+1),
	}
	for k, v := range t.byMAC {
		n.byMAC[k] = v
	}
	for k, v := range t.byIP {
		n.byIP[k] = v
	}
	for k, v := range t.byIP6 {
		n.byIP6[k] = v
	}
	copy(n.ports, t.ports)
	return n
}

// setGatewayMAC follows gVisor's SetLinkAddress on the gateway endpoint.
func (s *Switch) setGatewayMAC(mac [6]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tbl.Load().clone()
	t.gwMAC = mac
	t.gwLink = tcpip.LinkAddress(mac[:])
	s.tbl.Store(t)
}

// debugEnabled is cheap enough to ask per drop.
func (s *Switch) debugEnabled() bool {
	return s.log.Enabled(context.Background(), slog.LevelDebug)
}
