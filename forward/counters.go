package forward

import "sync/atomic"

// Path is the way a published port's client reached the member.
type Path int

const (
	// GVisor: through the network's gVisor stack (every UDP flow and
	// every TCP client but loopback ones with a fast path).
	GVisor Path = iota
	// Fast: a kernel socket made inside the member's network namespace
	// (the loopback fast path).
	Fast
	paths
)

func (p Path) String() string {
	if p == Fast {
		return "fast"
	}
	return "gvisor"
}

// Traffic is what one path carried: connections (UDP: flows) and the
// bytes relayed to the member (from its clients) and from it.
type Traffic struct {
	Connections, BytesIn, BytesOut uint64
}

// RelayStats are a member's published-port counters.
type RelayStats struct {
	TCP [paths]Traffic // by Path
	UDP Traffic        // always the gVisor path
}

// Counters count a member's published-port traffic as it happens; a nil
// *Counters counts nothing. They are added to once per datagram (UDP) or
// once a TCP connection's relay has ended, with the bytes it moved, never
// per read or splice.
type Counters struct {
	tcp [paths]trafficCounters
	udp trafficCounters
}

type trafficCounters struct{ conns, in, out atomic.Uint64 }

func (t *trafficCounters) load() Traffic {
	return Traffic{Connections: t.conns.Load(), BytesIn: t.in.Load(), BytesOut: t.out.Load()}
}

// Stats returns a snapshot.
func (c *Counters) Stats() RelayStats {
	var s RelayStats
	if c == nil {
		return s
	}
	for p := range paths {
		s.TCP[p] = c.tcp[p].load()
	}
	s.UDP = c.udp.load()
	return s
}

// tcpConn counts a TCP connection made on path.
func (c *Counters) tcpConn(p Path) {
	if c != nil {
		c.tcp[p].conns.Add(1)
	}
}

// tcpBytes adds what a TCP connection of path carried.
func (c *Counters) tcpBytes(p Path, in, out uint64) {
	if c != nil {
		c.tcp[p].in.Add(in)
		c.tcp[p].out.Add(out)
	}
}

// udpFlow counts a new UDP flow.
func (c *Counters) udpFlow() {
	if c != nil {
		c.udp.conns.Add(1)
	}
}

// udpBytes adds a datagram: to the member (in) or from it.
func (c *Counters) udpBytes(n int, in bool) {
	if c == nil {
		return
	}
	if in {
		c.udp.in.Add(uint64(n))
	} else {
		c.udp.out.Add(uint64(n))
	}
}
