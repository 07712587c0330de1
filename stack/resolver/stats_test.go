package resolver

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/netns-run/netns-run/stack/sourcerate"
)

// TestStatsCount: each way a query is answered, and each failed try of an
// upstream, moves its counter.
func TestStatsCount(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.1"))
	local := func(q dns.Question) ([]dns.RR, bool) {
		return []dns.RR{aRR(q.Name, "10.0.0.7")}, q.Name == "member.local."
	}
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{closedPort(t), up.addr}, Local: local})
	mustExchange(t, "udp", p.udp, query("member.local"))
	mustExchange(t, "tcp", p.tcp, query("member.local"))
	wantA(t, mustExchange(t, "udp", p.udp, query("example.com")), "192.0.2.1")
	got := p.proxy.Stats()
	if got.Local != 2 || got.Forwarded != 1 || got.Failed != 0 || got.UpstreamErrors != 1 || len(got.RateLimited) != 0 {
		t.Errorf("Stats() = %+v; want 2 local, 1 forwarded, 1 upstream error (the closed port), none rate-limited", got)
	}

	dead := startProxy(t, Config{Upstreams: []netip.AddrPort{closedPort(t)}})
	if r := mustExchange(t, "udp", dead.udp, query("example.com")); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s; want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if got := dead.proxy.Stats(); got.Failed != 1 || got.UpstreamErrors != 1 {
		t.Errorf("with no upstream answering, Stats() = %+v; want 1 failed, 1 upstream error", got)
	}
}

// TestClientOverItsRate: past its burst a client's queries are dropped
// unanswered and counted under its address, over UDP and TCP; another
// client is answered all the while.
func TestClientOverItsRate(t *testing.T) {
	local := func(q dns.Question) ([]dns.RR, bool) { return []dns.RR{aRR(q.Name, "10.0.0.7")}, true }
	p := startProxy(t, Config{Local: local, PerClient: sourcerate.Limit{PerSecond: 1e-9, Burst: 5}})
	c := rawUDP(t, p.udp)
	const sent = 20
	for i := range sent {
		q := query("flood.local")
		q.Id = uint16(i)
		if _, err := c.Write(pack(t, q)); err != nil {
			t.Fatal(err)
		}
	}
	replies := 0
	buf := make([]byte, 512)
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
		replies++
	}
	if replies != 5 {
		t.Errorf("%d of %d queries answered at a burst of 5", replies, sent)
	}
	// Over TCP the same client is over its rate too: no reply comes.
	tc := &dns.Client{Net: "tcp", Timeout: 300 * time.Millisecond}
	if _, _, err := tc.Exchange(query("tcp.local"), p.tcp); err == nil {
		t.Error("a TCP query over the client's rate was answered")
	}
	st := p.proxy.Stats()
	lo := netip.MustParseAddr("127.0.0.1")
	if st.RateLimited[lo] != sent-5+1 || st.Local != 5 {
		t.Errorf("Stats() = %+v; want %d rate-limited from %s and 5 answered", st, sent-5+1, lo)
	}

	// Another client (the same proxy on another address) is answered.
	pc, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 to query from: %v", err)
	}
	defer pc.Close()
	dst, _ := net.ResolveUDPAddr("udp", p.udp)
	if _, err := pc.WriteTo(pack(t, query("other.local")), dst); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := pc.ReadFrom(buf); err != nil {
		t.Errorf("another client's query while the first is over its rate: %v", err)
	}

	p.proxy.ForgetClient(lo)
	if _, ok := p.proxy.Stats().RateLimited[lo]; ok {
		t.Error("a forgotten client's drops are still counted")
	}
	wantA(t, mustExchange(t, "udp", p.udp, query("again.local")), "10.0.0.7")
}
