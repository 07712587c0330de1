package stack

import (
	"net/netip"
	"testing"
)

func TestUsageBoundsEachMember(t *testing.T) {
	u := newUsage(MemberLimits{TCP: 3, HalfOpen: 2})
	attacker, other := netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("172.18.0.3")
	for i := range 3 {
		if got := u.take(attacker, tcpConn); got != i+1 {
			t.Fatalf("connection %d of 3: take = %d; want it counted as held number %d", i+1, got, i+1)
		}
	}
	if u.take(attacker, tcpConn) != 0 {
		t.Error("a fourth connection over a limit of 3 was taken")
	}
	if u.take(other, tcpConn) == 0 {
		t.Error("another member was refused while the first one is at its limit")
	}
	if u.take(attacker, tcpHandshake) == 0 || u.take(attacker, tcpHandshake) == 0 || u.take(attacker, tcpHandshake) != 0 {
		t.Error("handshakes: want 2 taken, the third refused")
	}
	if got := u.limits.UDP; got != gatewayMaxUDP {
		t.Errorf("UDP limit left zero = %d; want the gateway's %d", got, gatewayMaxUDP)
	}
	if !u.allowNewTCP(attacker) || u.newTCP != nil {
		t.Error("no NewTCPPerSecond: want no rate kept")
	}

	u.release(attacker, tcpConn)
	if u.take(attacker, tcpConn) == 0 {
		t.Error("a connection given back was not free again")
	}
	// Released to nothing, an address leaves the table.
	for range 3 {
		u.release(attacker, tcpConn)
	}
	u.release(attacker, tcpHandshake)
	u.release(attacker, tcpHandshake)
	u.release(other, tcpConn)
	u.release(other, tcpConn) // one more than taken: ignored
	if len(u.peers) != 0 || u.total != [resources]int{} {
		t.Errorf("after every release: %d peers, totals %v; want none", len(u.peers), u.total)
	}
}

func TestUsageBoundsTheGateway(t *testing.T) {
	u := newUsage(MemberLimits{UDP: gatewayMaxUDP})
	base := netip.MustParseAddr("10.0.0.0")
	a := base
	for range gatewayMaxUDP {
		a = a.Next()
		if u.take(a, udpFlow) == 0 {
			t.Fatalf("flow from %s refused below the gateway's bound", a)
		}
	}
	if u.take(a.Next(), udpFlow) != 0 {
		t.Errorf("a flow over the gateway's bound of %d was taken", gatewayMaxUDP)
	}
}

func TestNewTCPRate(t *testing.T) {
	u := newUsage(MemberLimits{NewTCPPerSecond: 5})
	a, b := netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("172.18.0.3")
	allowed := 0
	for range 20 {
		if u.allowNewTCP(a) {
			allowed++
		}
	}
	if allowed < 5 || allowed > 6 {
		t.Errorf("20 connections at once at 5 a second: %d allowed; want the burst of 5", allowed)
	}
	if !u.allowNewTCP(b) {
		t.Error("another member was refused while the first is over its rate")
	}
}

// takeAll opens n connections for src and returns the buffers each got,
// stopping at the first refusal.
func takeAll(t *testing.T, u *usage, src netip.Addr, n int) []tcpBuffers {
	t.Helper()
	var got []tcpBuffers
	for range n {
		b, ok := u.takeConn(src)
		if !ok {
			break
		}
		got = append(got, b)
	}
	return got
}

func TestBufferBudgetBoundsAMember(t *testing.T) {
	u := newUsage(DefaultMemberLimits)
	stuck, other := netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("172.18.0.3")
	got := takeAll(t, u, stuck, DefaultMemberLimits.TCP)
	if len(got) != DefaultMemberLimits.TCP {
		t.Fatalf("the default budget gave %d connections buffers; want all %d the TCP bound allows", len(got), DefaultMemberLimits.TCP)
	}
	tiers := map[tcpBuffers]int{}
	for i, b := range got {
		tiers[b]++
		if i > 0 && b < got[i-1] {
			t.Fatalf("connection %d got bigger buffers (%d) than the one before (%d)", i+1, b, got[i-1])
		}
	}
	// The figures docs/ARCHITECTURE.md and DefaultMemberLimits' comment give.
	if tiers[autotunedBuffers] != 2 {
		t.Errorf("tiers %v; want 2 autotuned, the rest fixed", tiers)
	}
	if held := u.peers[stuck][tcpBufferBytes]; held > DefaultMemberLimits.TCPBufferBytes {
		t.Errorf("reserved %d bytes; want at most the budget, %d", held, DefaultMemberLimits.TCPBufferBytes)
	}
	if b := takeAll(t, u, other, 1); len(b) != 1 || b[0] != autotunedBuffers {
		t.Errorf("another member's first connection got %v; want autotuned buffers, its own budget", b)
	}

	// Given back, the biggest buffers are free again.
	for _, b := range got {
		u.releaseConn(stuck, b)
	}
	if _, left := u.peers[stuck]; left {
		t.Errorf("after every release the member still holds %v", u.peers[stuck])
	}
	if b := takeAll(t, u, stuck, 1); b[0] != autotunedBuffers {
		t.Errorf("after the release: %v; want autotuned buffers again", b)
	}
}

func TestBufferBudgetRefusesPastIt(t *testing.T) {
	// Room for two connections with fixed buffers, not three.
	u := newUsage(MemberLimits{TCP: 10, TCPBufferBytes: 2*fixedBuffers.bytes() + 1})
	src := netip.MustParseAddr("172.18.0.2")
	if got := takeAll(t, u, src, 10); len(got) != 2 || got[0] != fixedBuffers || got[1] != fixedBuffers {
		t.Errorf("a budget of two fixed buffers gave %v; want two fixed, then a refusal", got)
	}
}

func TestNoBufferBudgetAutotunesTheFirstConnections(t *testing.T) {
	u := newUsage(MemberLimits{})
	got := takeAll(t, u, netip.MustParseAddr("10.0.2.100"), fullBufferConns+2)
	for i, b := range got {
		want := autotunedBuffers
		if i >= fullBufferConns {
			want = fixedBuffers
		}
		if b != want {
			t.Errorf("connection %d: buffers %d; want %d", i+1, b, want)
		}
	}
}
