package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/stack/segment"
)

// running returns the daemon's segment of network id, if one runs.
func (s *Server) running(id string) (*segment.Segment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg, ok := s.segments[id]
	return seg, ok
}

// A segment runs while it has members: the last one leaving closes it and
// the next member gets a new one.
func TestSegmentClosesWithItsLastMember(t *testing.T) {
	s := testServer(t)
	s.segments = map[string]*segment.Segment{}
	s.upstreams = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")} // never asked here
	bridge, err := s.store.Get("bridge")
	if err != nil {
		t.Fatal(err)
	}
	join := func(id string) *member {
		t.Helper()
		m, joined := s.join(wire.Join{SandboxID: id + "0123456789abcdef", Name: id, Network: "bridge"})
		if m == nil {
			t.Fatalf("join %s: %s", id, joined.Error)
		}
		return m
	}

	a, b := join("a"), join("b")
	if a.seg != b.seg {
		t.Fatal("two members of one network got two segments")
	}
	s.leave(a)
	if seg, ok := s.running(bridge.ID); !ok || seg != b.seg {
		t.Fatal("the segment closed while a member was still on it")
	}
	s.leave(b)
	if _, ok := s.running(bridge.ID); ok {
		t.Fatal("the segment still runs after its last member left")
	}
	if leases, _ := s.store.Leases(bridge.ID); len(leases) != 0 {
		t.Errorf("leases %v after every member left", leases)
	}

	c := join("c")
	defer s.leave(c)
	if c.seg == b.seg {
		t.Error("a member after the last one left got the closed segment")
	}
	if seg, ok := s.running(bridge.ID); !ok || seg != c.seg {
		t.Error("the new member's segment is not the one running")
	}
}

// A join that fails gives back what it took: the lease, and a segment it
// started for that member alone.
func TestFailedJoinLeavesNothing(t *testing.T) {
	s := testServer(t)
	s.segments = map[string]*segment.Segment{}
	s.upstreams = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")} // never asked here
	bridge, err := s.store.Get("bridge")
	if err != nil {
		t.Fatal(err)
	}
	m, joined := s.join(wire.Join{SandboxID: "x0123456789abcdef", Name: "x", Network: "bridge", MAC: "not-a-mac"})
	if m != nil || !strings.Contains(joined.Error, "invalid --mac-address") {
		t.Fatalf("join with a bad MAC = %v, %q; want the MAC refused", m, joined.Error)
	}
	if _, ok := s.running(bridge.ID); ok {
		t.Error("the segment started for a join that failed still runs")
	}
	if leases, _ := s.store.Leases(bridge.ID); len(leases) != 0 {
		t.Errorf("leases %v after a join that failed", leases)
	}
}
