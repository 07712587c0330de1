package segment

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/netns-run/netns-run/stack"
	"github.com/netns-run/netns-run/stack/ethswitch"
	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
	"github.com/netns-run/netns-run/stack/pcap"
)

// syncBuffer is a bytes.Buffer safe to read while a capture writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// TestCaptureMember: a capture limited to one member writes the frames it
// sent and was sent, not those between two others, and stops at --count.
func TestCaptureMember(t *testing.T) {
	s := newSegment(t, Config{MemberNames: true})
	a, b, c := attach(t, s, 2, "alpha"), attach(t, s, 3, "beta"), attach(t, s, 4, "gamma")
	if _, err := s.Capture(context.Background(), &syncBuffer{}, "nobody", pcap.Options{}); err == nil {
		t.Fatal("a capture of an unknown member started")
	}
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := s.Capture(context.Background(), &out, "alpha", pcap.Options{Count: 2})
		done <- err
	}()
	toB := ethtest.UDPFrame(b.m.MAC, a.m.MAC, a.m.IP, b.m.IP, 1, 2, []byte("a->b"))
	cToB := ethtest.UDPFrame(b.m.MAC, c.m.MAC, c.m.IP, b.m.IP, 1, 2, []byte("c->b"))
	toA := ethtest.UDPFrame(a.m.MAC, b.m.MAC, b.m.IP, a.m.IP, 2, 1, []byte("b->a"))
	// The tap is set a moment after Capture starts: send until it shows.
	deadline := time.Now().Add(2 * time.Second)
	for {
		out.mu.Lock()
		n := out.b.Len()
		out.mu.Unlock()
		if n > 24 || time.Now().After(deadline) {
			break
		}
		a.Send(toB)
		b.Recv(time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	c.Send(cToB)
	b.Expect(cToB)
	b.Send(toA)
	a.Expect(toA)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the capture did not stop at its count")
	}
	r, err := pcapgo.NewReader(&out.b)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		got = append(got, data)
	}
	if len(got) != 2 || !bytes.Equal(got[0], toB) {
		t.Fatalf("captured %d frames, want alpha's two", len(got))
	}
	if !bytes.Equal(got[1], toB) && !bytes.Equal(got[1], toA) {
		t.Fatalf("captured a frame that is not alpha's: %x", got[1])
	}
}

func TestStats(t *testing.T) {
	s := newSegment(t, Config{})
	a, b := attach(t, s, 2, "alpha"), attach(t, s, 3, "beta")
	f := ethtest.UDPFrame(b.m.MAC, a.m.MAC, a.m.IP, b.m.IP, 1, 2, make([]byte, 1000))
	a.Send(f)
	b.Expect(f)
	a.Send(ethtest.UDPFrame(b.m.MAC, a.m.MAC, b.m.IP, b.m.IP, 1, 2, nil)) // spoofed source
	deadline := time.Now().Add(2 * time.Second)
	var st Stats
	for {
		st = s.Stats()
		// The members' counters are read before the switch's totals: wait
		// on the member's own, which the checks below read.
		if len(st.Members) == 2 && st.Members[0].Drops[ethswitch.DropSrcIP] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(st.Members) != 2 || st.Members[0].Name != "alpha" || st.Members[1].Name != "beta" {
		t.Fatalf("members: %+v", st.Members)
	}
	sa, sb := st.Members[0], st.Members[1]
	if sa.TxPackets != 2 || sa.TxBytes < uint64(len(f)) || sa.Drops[ethswitch.DropSrcIP] != 1 {
		t.Errorf("alpha: %+v", sa)
	}
	if sb.RxPackets != 1 || sb.RxBytes != uint64(len(f)) || len(sb.Drops) != 0 {
		t.Errorf("beta: %+v", sb)
	}
}

// TestStatsDHCPAndDNS: the segment counts its DHCP replies and DNS answers,
// drops a member's DHCP messages past their rate under its own reason, and
// keeps published-port counters for each member while it is on.
func TestStatsDHCPAndDNS(t *testing.T) {
	s := newSegment(t, Config{MemberNames: true})
	a, b := attach(t, s, 2, "alpha"), attach(t, s, 3, "beta")
	if a.resolve("beta") != b.m.IP || a.resolve("example.com") != upstreamIP {
		t.Fatal("the segment's DNS did not answer")
	}
	const sent = 50
	st := floodDHCP(t, s, a, sent)
	burst := uint64(2 * stack.DefaultMemberLimits.DHCPPerSecond)
	if got := st.DHCP.Offers; got < burst || got > burst+2 {
		t.Errorf("%d offers for %d discovers at a burst of %d", got, sent, burst)
	}
	if got := st.Members[0].Drops[DropDHCPRate]; got != sent-st.DHCP.Offers {
		t.Errorf("alpha's %q drops = %d; want the %d not answered", DropDHCPRate, got, sent-st.DHCP.Offers)
	}
	if _, ok := st.Members[1].Drops[DropDHCPRate]; ok {
		t.Error("beta has DHCP drops it did not cause")
	}
	if st.DNS.Local != 1 || st.DNS.Forwarded != 1 {
		t.Errorf("DNS stats %+v; want 1 local answer and 1 forwarded", st.DNS)
	}
	if s.Published(a.m.ID) == nil {
		t.Error("a member on the segment has no published-port counters")
	}
	s.Remove(a.m.ID)
	if s.Published(a.m.ID) != nil {
		t.Error("a removed member kept its published-port counters")
	}
}

// TestDHCPRateSetting: a member's DHCP rate is MemberLimits' when set
// (the daemon's "dhcp-per-second"): a burst of twice as many answered.
func TestDHCPRateSetting(t *testing.T) {
	s := newSegment(t, Config{MemberLimits: stack.MemberLimits{DHCPPerSecond: 3}})
	a := attach(t, s, 2, "alpha")
	const sent = 20
	st := floodDHCP(t, s, a, sent)
	if got := st.DHCP.Offers; got < 6 || got > 7 {
		t.Errorf("%d offers for %d discovers at 3 a second; want the burst of 6 (and one refilled at most)", got, sent)
	}
}

// floodDHCP sends sent DHCP discovers from a, the segment's first member,
// and returns the segment's counters once each is answered or dropped.
func floodDHCP(t *testing.T, s *Segment, a *fakeLink, sent int) Stats {
	t.Helper()
	disc, err := dhcpv4.NewDiscovery(a.m.MAC)
	if err != nil {
		t.Fatal(err)
	}
	f := ethtest.UDPFrame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, a.m.MAC, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, disc.ToBytes())
	for range sent {
		a.Send(f)
	}
	var st Stats
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st = s.Stats(); st.DHCP.Offers+st.Members[0].Drops[DropDHCPRate] == uint64(sent) {
			break
		}
	}
	return st
}
