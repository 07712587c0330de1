package stack

import (
	"net/netip"
	"sync"

	"github.com/netns-run/netns-run/stack/sourcerate"
)

// MemberLimits bound what one member address can make the gateway hold on
// the host: every outbound TCP connection and UDP flow is a host socket of
// the network process, and the sandbox is untrusted (docs/ARCHITECTURE.md,
// Processes: Trust). A member at its TCP or UDP bound gets a reset (TCP)
// or nothing (UDP); past its handshakes or its rate of new connections its
// SYN is dropped (a client sends it again a second later); each counted
// as Capped in its PeerStats. The other members are not touched. A zero
// field leaves that bound to the gateway's own: a private
// network's one sandbox and the slirp4netns mode have no one to share
// with; the daemon gives shared networks DefaultMemberLimits, or what its
// settings say.
type MemberLimits struct {
	// TCP bounds open outbound TCP connections, handshakes included.
	TCP int
	// HalfOpen bounds outbound TCP handshakes in progress (from the SYN
	// until the host-side dial and the member's own handshake are both
	// done): a SYN flood holds no more than this many host sockets, and
	// the gateway's slots for handshakes stay free for the other members.
	HalfOpen int
	// UDP bounds outbound UDP flows (one per source and destination
	// port, ended after udpIdle).
	UDP int
	// NewTCPPerSecond bounds the outbound TCP connections started a
	// second (a burst of as many is let through at once). Each one is a
	// host connection made before the member's handshake completes, so a
	// SYN flood to an open port turns into host connections at no more
	// than this rate.
	NewTCPPerSecond int
	// TCPBufferBytes bounds what the gateway may buffer for the member's
	// TCP connections: gVisor's send and receive buffers and the relay's
	// copy buffers, each connection's reserved at its start at the most
	// they can grow to (tcpBuffers, takeConn). A member that writes and never reads
	// fills them all; this keeps what it can make the network process
	// hold a figure, not a product of its connections.
	TCPBufferBytes int
	// DNSPerSecond and DHCPPerSecond bound the requests a member sends the
	// network process itself (its resolver and DHCP server, which parse
	// each one), with a burst of twice as many; past them a query or
	// message is dropped unanswered, counted as "dns over rate" or "dhcp
	// over rate". The segment applies them, not the gateway.
	DNSPerSecond, DHCPPerSecond int
}

// DefaultMemberLimits: at most 200 host descriptors for one member's
// connections and flows in all, enough for a browser, a package manager
// or a service with connection pools; a crawler or a load generator
// needs more (the daemon's settings raise them). 64 MiB of TCP buffers
// give 2 connections gVisor's autotuned ones (bulk transfers at full
// speed) and the other 158 fixed ones. 200 DNS queries a second are far
// more than a resolver with a cache sends; 10 DHCP messages a handful of
// leases.
var DefaultMemberLimits = MemberLimits{TCP: 160, HalfOpen: 32, UDP: 40, NewTCPPerSecond: 1000, TCPBufferBytes: 64 << 20,
	DNSPerSecond: 200, DHCPPerSecond: 10}

// Over is l with its zero fields taken from d.
func (l MemberLimits) Over(d MemberLimits) MemberLimits {
	for _, f := range []struct{ set, to *int }{
		{&l.TCP, &d.TCP}, {&l.HalfOpen, &d.HalfOpen}, {&l.UDP, &d.UDP}, {&l.NewTCPPerSecond, &d.NewTCPPerSecond},
		{&l.TCPBufferBytes, &d.TCPBufferBytes}, {&l.DNSPerSecond, &d.DNSPerSecond}, {&l.DHCPPerSecond, &d.DHCPPerSecond},
	} {
		if *f.set > 0 {
			*f.to = *f.set
		}
	}
	return d
}

// Whole-gateway bounds, above the members' own: a private network's
// sandbox may send from any source address.
const (
	gatewayMaxTCP = 16384
	gatewayMaxUDP = 1024
)

// resource is what a member holds at the gateway.
type resource int

const (
	tcpConn resource = iota
	tcpHandshake
	udpFlow
	// tcpBufferBytes is bytes, not a count: what takeConn reserved.
	tcpBufferBytes
	resources
)

// usage counts what each member address holds, and the gateway in all.
// An address holding nothing has no entry, so the table never outgrows the
// connections it counts.
type usage struct {
	limits MemberLimits
	mu     sync.Mutex
	total  [resources]int
	peers  map[netip.Addr]*[resources]int
	// newTCP is each address's rate of new connections (nil: none); it
	// outlives the counts, as a rate spans connections.
	newTCP *sourcerate.Table
}

func newUsage(l MemberLimits) *usage {
	l = l.Over(MemberLimits{TCP: gatewayMaxTCP, HalfOpen: gatewayMaxTCP, UDP: gatewayMaxUDP})
	u := &usage{limits: l, peers: map[netip.Addr]*[resources]int{}}
	if n := l.NewTCPPerSecond; n > 0 {
		u.newTCP = sourcerate.New(sourcerate.Limit{PerSecond: float64(n), Burst: n})
	}
	return u
}

// allowNewTCP says whether src may start another outbound TCP connection
// now, at its NewTCPPerSecond (if it has one).
func (u *usage) allowNewTCP(src netip.Addr) bool {
	return u.newTCP == nil || u.newTCP.Allow(src)
}

// dropsSYN says whether forwardTCP would drop a SYN from src now, silently
// at its handshakes or its rate (not with a reset at its connections),
// only looking: nothing is taken. The link watcher asks it first, so that
// a flood past the limits costs no more than this (syncheck.go).
func (u *usage) dropsSYN(src netip.Addr) bool {
	u.mu.Lock()
	var held [resources]int
	if h := u.peers[src]; h != nil {
		held = *h
	}
	connFull, handshakesFull := u.full(held, tcpConn), u.full(held, tcpHandshake)
	u.mu.Unlock()
	if connFull {
		return false
	}
	return handshakesFull || u.newTCP != nil && u.newTCP.Exhausted(src)
}

func (u *usage) max(r resource) (member, gateway int) {
	switch r {
	case tcpConn:
		return u.limits.TCP, gatewayMaxTCP
	case tcpHandshake:
		return u.limits.HalfOpen, gatewayMaxTCP
	case udpFlow:
		return u.limits.UDP, gatewayMaxUDP
	default: // tcpBufferBytes: takeConn counts them
		return 0, 0
	}
}

// full says whether a member holding held, or the gateway, is at its
// bound of r. u.mu is held.
func (u *usage) full(held [resources]int, r resource) bool {
	member, gateway := u.max(r)
	return held[r] >= member || u.total[r] >= gateway
}

// take counts one r for src and returns how many src holds now, this one
// included; 0 when src or the gateway is at its bound.
func (u *usage) take(src netip.Addr, r resource) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	held := u.peers[src]
	if held == nil {
		held = new([resources]int)
	}
	if u.full(*held, r) {
		return 0
	}
	held[r]++
	u.total[r]++
	u.peers[src] = held
	return held[r]
}

// release gives back one r that take counted for src.
func (u *usage) release(src netip.Addr, r resource) {
	u.mu.Lock()
	defer u.mu.Unlock()
	held := u.peers[src]
	if held == nil || held[r] == 0 {
		return
	}
	held[r]--
	u.total[r]--
	if *held == ([resources]int{}) {
		delete(u.peers, src)
	}
}

// takeConn counts one outbound TCP connection for src and reserves its
// buffers from src's TCPBufferBytes, under one lock; false when src or
// the gateway is at its TCP bound or the budget cannot hold even fixed
// buffers. With a budget, a connection is autotuned only if that leaves
// enough for fixed buffers on every connection src may still open, so
// that the budget, not the order the connections come in, bounds what src
// holds. Without one (a private network's one sandbox), its first
// fullBufferConns connections are autotuned and the rest fixed.
func (u *usage) takeConn(src netip.Addr) (tcpBuffers, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	held := u.peers[src]
	if held == nil {
		held = new([resources]int)
	}
	if u.full(*held, tcpConn) {
		return 0, false
	}
	b := autotunedBuffers
	if budget := u.limits.TCPBufferBytes; budget == 0 {
		if held[tcpConn] >= fullBufferConns {
			b = fixedBuffers
		}
	} else {
		free := budget - held[tcpBufferBytes]
		later := max(u.limits.TCP-held[tcpConn]-1, 0) * fixedBuffers.bytes()
		if b.bytes()+later > free {
			b = fixedBuffers
		}
		if b.bytes() > free {
			return 0, false
		}
		held[tcpBufferBytes] += b.bytes()
	}
	held[tcpConn]++
	u.total[tcpConn]++
	u.peers[src] = held
	return b, true
}

// releaseConn gives back a connection takeConn counted with b.
func (u *usage) releaseConn(src netip.Addr, b tcpBuffers) {
	u.mu.Lock()
	if held := u.peers[src]; held != nil && u.limits.TCPBufferBytes > 0 {
		held[tcpBufferBytes] = max(held[tcpBufferBytes]-b.bytes(), 0)
	}
	u.mu.Unlock()
	u.release(src, tcpConn)
}
