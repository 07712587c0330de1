package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/stack/ethswitch"
	"github.com/netns-run/netns-run/stack/segment"
)

// At debug level the daemon logs every member's join and leave, every
// lease session, every change of published ports and the switch's drops:
// at most one line per member and reason a second, with how many frames
// it stands for and the last dropped frame's addresses, which the switch
// reports (up to ten a second per port) to dropFrames instead of logging
// them itself.

// dropLogEvery is how often the drop counters are read for the log.
const dropLogEvery = time.Second

// logJoined: m has an address on its network and its ports are bound.
func (s *Server) logJoined(m *member) {
	s.log.Debug("member joined", "network", m.net.Name, "member", m.join.Name, "sandbox", shortID(m.join.SandboxID),
		"ip", m.ip, "ip6", optionalAddr(m.ip6), "mac", m.mac.String(), "ports", portList(m.ports()))
}

// logLeft: m left, its lease dropped.
func (s *Server) logLeft(m *member) {
	s.log.Debug("member left", "network", m.net.Name, "member", m.join.Name, "sandbox", shortID(m.join.SandboxID), "ip", m.ip)
}

// logLease: a lease session on a kernel macvlan network holds ip (and
// ip6), or (held false) has ended and dropped them.
func (s *Server) logLease(n netstore.Network, sandboxID string, ip, ip6 netip.Addr, held bool) {
	msg := "lease held"
	if !held {
		msg = "lease dropped"
	}
	s.log.Debug(msg, "network", n.Name, "sandbox", shortID(sandboxID), "ip", ip, "ip6", optionalAddr(ip6))
}

// logPorts: ports were published (added) or withdrawn (removed, as
// asked) on m.
func (s *Server) logPorts(m *member, added []*forward.Listener, removed []forward.Mapping) {
	bound := make([]forward.Mapping, len(added))
	for i, l := range added {
		bound[i] = l.Mapping()
	}
	s.log.Debug("ports changed", "network", m.net.Name, "member", m.join.Name, "sandbox", shortID(m.join.SandboxID),
		"added", portList(bound), "removed", portList(removed), "ports", portList(m.ports()))
}

func shortID(id string) string { return id[:min(len(id), 12)] }

// optionalAddr is a's text, empty when it is unset.
func optionalAddr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func portList(ms []forward.Mapping) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return strings.Join(out, ",")
}

// summarizeDrops logs, at debug level, the drops every dropLogEvery
// until the returned stop is called, with the frames the switches
// reported to s.dropFrames.
func (s *Server) summarizeDrops() (stop func()) {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(dropLogEvery)
		defer tick.Stop()
		seen := map[dropCounter]uint64{}
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			var lines []dropLine
			lines, seen = newDrops(s.segmentStats(), seen)
			last := s.dropFrames.takeAll()
			for _, l := range lines {
				attrs := []any{"network", l.network, "member", l.member, "sandbox", shortID(l.sandboxID), "reason", l.reason, "count", l.count}
				for _, a := range last[dropKey{l.network, l.mac, l.reason}] {
					attrs = append(attrs, a)
				}
				s.log.Debug("drop", attrs...)
			}
		}
	}()
	return func() { close(done) }
}

// runningSegment is a segment's counters with its network's name.
type runningSegment struct {
	network string
	stats   segment.Stats
}

// segmentStats reads the running segments' counters.
func (s *Server) segmentStats() []runningSegment {
	s.mu.Lock()
	segs := map[*segment.Segment]string{}
	for _, m := range s.members {
		if s.segments[m.net.ID] == m.seg {
			segs[m.seg] = m.net.Name
		}
	}
	s.mu.Unlock()
	out := make([]runningSegment, 0, len(segs))
	for seg, name := range segs {
		out = append(out, runningSegment{name, seg.Stats()})
	}
	return out
}

// dropCounter is one member's count of one reason.
type dropCounter struct{ network, sandboxID, reason string }

// dropLine is a member's drops of one reason since the last line.
type dropLine struct {
	network, member, sandboxID, mac, reason string
	count                                   uint64
}

// newDrops compares the counters with those seen before and returns a
// line for each that grew, in order, and the counters to compare with
// next (of the members present now only).
func newDrops(segs []runningSegment, seen map[dropCounter]uint64) ([]dropLine, map[dropCounter]uint64) {
	now := map[dropCounter]uint64{}
	var lines []dropLine
	for _, seg := range segs {
		for _, m := range seg.stats.Members {
			for reason, n := range m.Drops {
				k := dropCounter{seg.network, m.ID, reason}
				now[k] = n
				if n > seen[k] {
					lines = append(lines, dropLine{seg.network, m.Name, m.ID, m.Member.MAC.String(), reason, n - seen[k]})
				}
			}
		}
	}
	sort.Slice(lines, func(i, j int) bool {
		a, b := lines[i], lines[j]
		if a.network != b.network {
			return a.network < b.network
		}
		if a.member != b.member {
			return a.member < b.member
		}
		return a.reason < b.reason
	})
	return lines, now
}

// dropKey names the switch's drop lines of one port and reason.
type dropKey struct{ network, mac, reason string }

// dropFrames holds the addresses of the last frame a switch reported
// dropping, per network, port and reason, until the next summary.
type dropFrames struct {
	mu   sync.Mutex
	last map[dropKey][]slog.Attr
}

func (f *dropFrames) put(k dropKey, attrs []slog.Attr) {
	f.mu.Lock()
	f.last[k] = attrs
	f.mu.Unlock()
}

// takeAll returns the frames held and starts afresh.
func (f *dropFrames) takeAll() map[dropKey][]slog.Attr {
	f.mu.Lock()
	defer f.mu.Unlock()
	last := f.last
	f.last = map[dropKey][]slog.Attr{}
	return last
}

// onDrop is a segment's ethswitch.Options.OnDrop: it keeps the frame
// for the next summary.
func (f *dropFrames) onDrop(network string) func(ethswitch.Drop) {
	return func(d ethswitch.Drop) { f.put(dropKey{network, d.Member, d.Reason}, d.Frame) }
}
