package resolver

import (
	"context"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/netns-run/netns-run/stack/sourcerate"
)

// The fuzz targets' sockets are all on 127.0.0.1; no real resolver is
// contacted.

var fuzzClient = &net.UDPAddr{IP: net.IPv4(198, 51, 100, 9), Port: 5353}

// capturePC is the sandbox-facing UDP socket: it keeps the replies the
// proxy writes.
type capturePC struct {
	mu      sync.Mutex
	replies [][]byte
}

func (c *capturePC) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replies = append(c.replies, append([]byte(nil), b...))
	return len(b), nil
}

func (c *capturePC) take() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.replies
	c.replies = nil
	return r
}

func (*capturePC) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, net.ErrClosed }
func (*capturePC) Close() error                           { return nil }
func (*capturePC) LocalAddr() net.Addr                    { return &net.UDPAddr{IP: net.IPv4(10, 0, 2, 3), Port: 53} }
func (*capturePC) SetDeadline(time.Time) error            { return nil }
func (*capturePC) SetReadDeadline(time.Time) error        { return nil }
func (*capturePC) SetWriteDeadline(time.Time) error       { return nil }

// fuzzLocal answers every name but those under "upstream.": many A
// records (so that replies must be truncated), a TXT of the name, or
// nothing.
func fuzzLocal(q dns.Question) ([]dns.RR, bool) {
	if dns.IsSubDomain("upstream.", q.Name) {
		return nil, false
	}
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 60}
	switch q.Qtype {
	case dns.TypeA:
		var rrs []dns.RR
		for i := range 60 {
			rrs = append(rrs, &dns.A{Hdr: hdr, A: net.IPv4(203, 0, 113, byte(i))})
		}
		return rrs, true
	case dns.TypeTXT:
		return []dns.RR{&dns.TXT{Hdr: hdr, Txt: []string{q.Name, strings.Repeat("x", 255)}}}, true
	}
	return nil, true
}

// FuzzQuery feeds raw messages from a sandbox through the proxy's own
// parse and answer, over UDP and TCP: a message is dropped or answered
// with one reply that parses, carries its ID and question, and fits the
// size the client can take.
func FuzzQuery(f *testing.F) {
	for _, m := range []*dns.Msg{
		new(dns.Msg).SetQuestion("web.", dns.TypeA),
		new(dns.Msg).SetQuestion("db.example.", dns.TypeTXT),
		new(dns.Msg).SetQuestion("x.upstream.", dns.TypeAAAA),
		new(dns.Msg).SetQuestion("web.", dns.TypeA).SetEdns0(4096, true),
		new(dns.Msg).SetQuestion("web.", dns.TypeA).SetEdns0(100, false),
		{MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeNotify}, Question: []dns.Question{{Name: "a.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}},
		{Question: []dns.Question{{Name: "a.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, {Name: "b.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}},
		new(dns.Msg).SetReply(new(dns.Msg).SetQuestion("reflect.", dns.TypeA)),
	} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}) // a question announced, none there
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})

	// Names under "upstream." go to a closed loopback port: refused at
	// once, so they are answered SERVFAIL.
	pc0, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	closed := pc0.LocalAddr().(*net.UDPAddr).AddrPort()
	pc0.Close()
	// No rate: the fuzzer's queries, from one client, come faster than
	// any member's may.
	p, err := New(Config{Upstreams: []netip.AddrPort{closed}, Local: fuzzLocal, Timeout: time.Second,
		PerClient: sourcerate.Limit{PerSecond: math.MaxFloat64, Burst: 1}})
	if err != nil {
		f.Fatal(err)
	}
	pc := &capturePC{}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := p.parse(append([]byte(nil), b...), "udp", fuzzClient)
		if req != nil {
			p.answerPacket(context.Background(), pc, fuzzClient, req)
		}
		replies := pc.take()
		if req == nil {
			if len(replies) != 0 {
				t.Fatalf("a dropped message was answered")
			}
			return
		}
		if len(replies) != 1 {
			t.Fatalf("query %x: %d replies, want 1", b, len(replies))
		}
		checkReply(t, req, replies[0], clientUDPSize(req))
		checkReply(t, req, tcpExchange(t, p, b), dns.MaxMsgSize)
	})
}

// checkReply checks the reply to req: it parses, answers req, and is at
// most limit bytes.
func checkReply(t *testing.T, req *dns.Msg, reply []byte, limit int) {
	t.Helper()
	if len(reply) > limit {
		t.Fatalf("reply of %d bytes, the client takes %d", len(reply), limit)
	}
	m := new(dns.Msg)
	if err := m.Unpack(reply); err != nil {
		t.Fatalf("reply %x does not parse: %v", reply, err)
	}
	if m.Id != req.Id || !m.Response {
		t.Fatalf("reply has ID %d (response %v), want a response with ID %d", m.Id, m.Response, req.Id)
	}
	// Names compare without case, as resolvers do (an upstream may answer
	// in another case, as with 0x20 randomisation).
	if len(m.Question) > 0 && len(req.Question) > 0 && !sameQuestion(&dns.Msg{Question: req.Question[:1]}, &dns.Msg{Question: m.Question[:1]}) {
		t.Fatalf("reply is for %v, the query asked %v", m.Question[0], req.Question[0])
	}
}

// tcpExchange sends b over a stream connection served by the proxy and
// returns the one reply.
func tcpExchange(t *testing.T, p *Proxy, b []byte) []byte {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); p.serveConn(context.Background(), server) }()
	defer func() { client.Close(); <-done }()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write(frame(b)); err != nil {
		t.Fatalf("writing the query: %v", err)
	}
	reply, err := readFrame(client)
	if err != nil {
		t.Fatalf("reading the TCP reply: %v", err)
	}
	return reply
}

// fuzzUpstream is a resolver on 127.0.0.1, UDP and TCP on one port, that
// answers every query with the bytes it is given, under the query's ID.
type fuzzUpstream struct {
	addr   netip.AddrPort
	mu     sync.Mutex
	answer []byte
}

func (u *fuzzUpstream) set(b []byte) {
	u.mu.Lock()
	u.answer = append([]byte(nil), b...)
	u.mu.Unlock()
}

// reply is the answer to query: the bytes given, with query's ID.
func (u *fuzzUpstream) reply(query []byte) []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	b := append([]byte(nil), u.answer...)
	if len(b) >= 2 && len(query) >= 2 {
		copy(b, query[:2])
	}
	return b
}

func startFuzzUpstream(f *testing.F) *fuzzUpstream {
	f.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			f.Fatal(err)
		}
		ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		ln, err := net.Listen("tcp", ap.String())
		if err != nil {
			pc.Close() // port taken for TCP; try another
			continue
		}
		u := &fuzzUpstream{addr: ap}
		var wg sync.WaitGroup
		wg.Go(func() { u.servePacket(pc) })
		wg.Go(func() { u.serveStream(ln) })
		f.Cleanup(func() { pc.Close(); ln.Close(); wg.Wait() })
		return u
	}
	f.Fatal("no free port for UDP and TCP")
	return nil
}

func (u *fuzzUpstream) servePacket(pc net.PacketConn) {
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(u.reply(buf[:n]), from)
	}
}

func (u *fuzzUpstream) serveStream(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if q, err := readFrame(c); err == nil {
			c.Write(frame(u.reply(q)))
		}
		c.Close()
	}
}

// FuzzUpstreamAnswer makes an upstream answer with raw bytes, over UDP
// and, when they say truncated, TCP: whatever it sends, the sandbox gets
// one reply that parses, carries its query's ID and question, and fits
// the size it can take.
func FuzzUpstreamAnswer(f *testing.F) {
	q := new(dns.Msg).SetQuestion("www.example.", dns.TypeA)
	aRR := func(i int) dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: "www.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(203, 0, 113, byte(i))}
	}
	good := new(dns.Msg).SetReply(q)
	good.Answer = []dns.RR{aRR(1)}
	big := new(dns.Msg).SetReply(q)
	for i := range 80 {
		big.Answer = append(big.Answer, aRR(i))
	}
	truncated := new(dns.Msg).SetReply(q)
	truncated.Truncated = true
	other := new(dns.Msg).SetReply(new(dns.Msg).SetQuestion("other.example.", dns.TypeA))
	for _, m := range []*dns.Msg{good, big, truncated, other, new(dns.Msg).SetRcode(q, dns.RcodeNameError), new(dns.Msg).SetRcode(q, dns.RcodeServerFailure)} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte{0}, false)

	up := startFuzzUpstream(f)
	p, err := New(Config{Upstreams: []netip.AddrPort{up.addr}, Timeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	pc := &capturePC{}
	f.Fuzz(func(t *testing.T, answer []byte, edns bool) {
		up.set(answer)
		req := q.Copy()
		req.Id = dns.Id()
		if edns {
			req.SetEdns0(1232, false)
		}
		p.answerPacket(context.Background(), pc, fuzzClient, req)
		replies := pc.take()
		if len(replies) != 1 {
			t.Fatalf("upstream answer %x: %d replies to the sandbox, want 1", answer, len(replies))
		}
		checkReply(t, req, replies[0], clientUDPSize(req))
	})
}
