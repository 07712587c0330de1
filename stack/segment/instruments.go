package segment

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/stack/dhcp"
	"github.com/netns-run/netns-run/stack/ethswitch"
	"github.com/netns-run/netns-run/stack/pcap"
	"github.com/netns-run/netns-run/stack/resolver"
)

// MemberStats are one member's counters: its switch port's (from the
// member's side: Tx is what it sent; the drops also count its DHCP
// messages and DNS queries over their rates, as DropDHCPRate and
// DropDNSRate), what the gateway's stack holds for it, and its published
// ports' traffic.
type MemberStats struct {
	Member
	ethswitch.PortStats
	Published forward.RelayStats
	// TCP and UDP are its connections and flows open in the gateway's
	// stack: outbound through the NAT, and published ports' connections
	// on the gVisor path (not those on the loopback fast path, which
	// never enter the segment).
	TCP, UDP int
	// NoRoute and Capped are its connections the NAT refused: to where it
	// does not go, and at the gateway's limits.
	NoRoute, Capped uint64
}

// Stats are a segment's counters.
type Stats struct {
	Members []MemberStats // by name
	Switch  ethswitch.Stats
	DNS     resolver.Stats
	DHCP    dhcp.Stats
}

// Stats returns a snapshot of the segment's counters.
func (s *Segment) Stats() Stats {
	ports := map[string]ethswitch.PortStats{}
	for _, ps := range s.sw.PortStats() {
		ports[ps.MAC.String()] = ps
	}
	peers := s.gw.PeerStats()
	dnsStats, dhcpRefused := s.dns.Stats(), s.dhcpRate.Refused()
	s.mu.Lock()
	out := Stats{Members: make([]MemberStats, 0, len(s.members)), DNS: dnsStats, DHCP: s.dhcp.Stats()}
	for _, m := range s.members {
		ms := MemberStats{Member: m, PortStats: ports[m.MAC.String()], Published: s.published[m.ID].Stats()}
		if ms.Drops == nil {
			ms.Drops = map[string]uint64{}
		}
		addDrops(ms.Drops, DropDHCPRate, dhcpRefused[m.IP])
		addDrops(ms.Drops, DropDNSRate, dnsStats.RateLimited[m.IP])
		if m.IP6.IsValid() {
			addDrops(ms.Drops, DropDNSRate, dnsStats.RateLimited[m.IP6])
		}
		p := peers[m.IP]
		ms.TCP, ms.UDP, ms.NoRoute, ms.Capped = p.TCP, p.UDP, p.NoRoute, p.Capped
		out.Members = append(out.Members, ms)
	}
	s.mu.Unlock()
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].Name < out.Members[j].Name })
	out.Switch = s.sw.Stats()
	return out
}

// addDrops adds n drops for reason, keeping the map's nonzero counts
// only.
func addDrops(drops map[string]uint64, reason string, n uint64) {
	if n > 0 {
		drops[reason] += n
	}
}

// Capture writes the frames the segment's switch takes in to w, in pcap
// format, until ctx ends, the segment closes, opts.Count frames are
// written or a write fails. With member (a name, alias or id prefix of 12
// or more) set, only the frames that member sent or was sent, and the
// broadcasts and multicasts it receives, are written.
func (s *Segment) Capture(ctx context.Context, w io.Writer, member string, opts pcap.Options) (pcap.Result, error) {
	if member != "" {
		m, ok := s.lookup(member)
		if !ok {
			return pcap.Result{}, fmt.Errorf("network %s has no member %s", s.name, member)
		}
		mac := [6]byte(m.MAC)
		opts.Match = func(f []byte) bool {
			return len(f) >= 12 && ([6]byte(f[6:12]) == mac || [6]byte(f[0:6]) == mac || f[0]&1 != 0)
		}
	}
	c, err := pcap.New(w, opts)
	if err != nil {
		return pcap.Result{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	defer s.sw.AddTap(c.Tap)()
	return c.Run(ctx)
}
