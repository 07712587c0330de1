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
