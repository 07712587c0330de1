package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// All sockets in these tests are on 127.0.0.1; no real resolver is contacted.

// upstream is a fake resolver serving UDP and TCP on the same loopback port.
type upstream struct {
	addr     netip.AddrPort
	udp, tcp atomic.Int32 // queries received
}

// handlerFunc answers a query received by a fake upstream; nil means no reply.
type handlerFunc func(tcp bool, req *dns.Msg) *dns.Msg

func startUpstream(t *testing.T, h handlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		tcp := w.RemoteAddr().Network() == "tcp"
		if tcp {
			u.tcp.Add(1)
		} else {
			u.udp.Add(1)
		}
		if resp := h(tcp, req); resp != nil {
			w.WriteMsg(resp)
		}
	})
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			pc.Close() // port taken for TCP; try another
			continue
		}
		u.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		for _, srv := range []*dns.Server{
			{PacketConn: pc, Handler: handler},
			{Listener: ln, Handler: handler},
		} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			done := make(chan struct{})
			go func() {
				defer close(done)
				srv.ActivateAndServe()
			}()
			<-started
			t.Cleanup(func() {
				srv.Shutdown()
				<-done
			})
		}
		return u
	}
	t.Fatal("no free port for UDP and TCP")
	return nil
}

func answerA(ip string) handlerFunc {
	return func(_ bool, req *dns.Msg) *dns.Msg {
		m := new(dns.Msg).SetReply(req)
		m.Answer = []dns.RR{aRR(req.Question[0].Name, ip)}
		return m
	}
}

func rcode(code int) handlerFunc {
	return func(_ bool, req *dns.Msg) *dns.Msg {
		return new(dns.Msg).SetRcode(req, code)
	}
}

func aRR(name, ip string) dns.RR {
	return &dns.A{
		Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
		A:   net.ParseIP(ip).To4(),
	}
}

// closedPort returns a loopback UDP address nothing listens on, so queries
// to it are refused (ICMP port unreachable) at once.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	return ap
}

// blackhole returns a loopback UDP address whose socket never answers.
func blackhole(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

type proxyAddrs struct {
	udp, tcp string
	proxy    *Proxy
}

// startProxy serves cfg on loopback UDP and TCP sockets until the test ends,
// then checks that both Serve methods return nil promptly.
func startProxy(t *testing.T, cfg Config) proxyAddrs {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { errs <- p.ServePacket(ctx, pc) }()
	go func() { errs <- p.ServeStream(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case err := <-errs:
				if err != nil {
					t.Errorf("Serve returned %v after cancel, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return after cancel")
			}
		}
	})
	return proxyAddrs{udp: pc.LocalAddr().String(), tcp: ln.Addr().String(), proxy: p}
}

func exchange(network, addr string, m *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func mustExchange(t *testing.T, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	r, err := exchange(network, addr, m)
	if err != nil {
		t.Fatalf("%s query to %s: %v", network, addr, err)
	}
	return r
}

func query(name string) *dns.Msg {
	return new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA)
}

func wantA(t *testing.T, r *dns.Msg, ip string) {
	t.Helper()
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode = %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
	if len(r.Answer) != 1 {
		t.Fatalf("got %d answers, want 1: %v", len(r.Answer), r.Answer)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok || a.A.String() != ip {
		t.Fatalf("answer = %v, want A %s", r.Answer[0], ip)
	}
}

// rawUDP returns a UDP socket connected to addr, closed when the test ends.
func rawUDP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readMsg(t *testing.T, c net.Conn) *dns.Msg {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return m
}

func pack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestForwardsAnswer(t *testing.T) {
	var upstreamIDs sync.Map
	up := startUpstream(t, func(tcp bool, req *dns.Msg) *dns.Msg {
		upstreamIDs.Store(req.Id, true)
		return answerA("192.0.2.1")(tcp, req)
	})
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}})

	r := mustExchange(t, "udp", p.udp, query("example.com"))
	wantA(t, r, "192.0.2.1")
	if !r.Response || r.Question[0].Name != "example.com." {
		t.Errorf("bad reply header/question: %v", r)
	}
	if up.udp.Load() != 1 || up.tcp.Load() != 0 {
		t.Errorf("upstream got %d UDP, %d TCP queries; want 1, 0", up.udp.Load(), up.tcp.Load())
	}
}

func TestPreservesID(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.7"))
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}})

	c := rawUDP(t, p.udp)
	for _, id := range []uint16{0, 1, 0xbeef, 0xffff} {
		q := query("id.example")
		q.Id = id
		if _, err := c.Write(pack(t, q)); err != nil {
			t.Fatal(err)
		}
		r := readMsg(t, c)
		if r.Id != id {
			t.Errorf("reply ID = %#x, want %#x", r.Id, id)
		}
		wantA(t, r, "192.0.2.7")
	}

	// Same over TCP (dns.Client checks the ID too, but be explicit).
	q := query("id.example")
	q.Id = 0x1234
	r := mustExchange(t, "tcp", p.tcp, q)
	if r.Id != 0x1234 {
		t.Errorf("TCP reply ID = %#x, want 0x1234", r.Id)
	}
}

func TestFallbackClosedPort(t *testing.T) {
	good := startUpstream(t, answerA("192.0.2.2"))
	p := startProxy(t, Config{
		Upstreams: []netip.AddrPort{closedPort(t), good.addr},
		Timeout:   3 * time.Second,
	})
	start := time.Now()
	r := mustExchange(t, "udp", p.udp, query("fallback.example"))
	wantA(t, r, "192.0.2.2")
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v; a refused upstream should be skipped without waiting for the timeout", d)
	}
}

func TestFallbackTimeout(t *testing.T) {
	const timeout = 150 * time.Millisecond
	good := startUpstream(t, answerA("192.0.2.3"))
	silent := startUpstream(t, func(bool, *dns.Msg) *dns.Msg { return nil })
	p := startProxy(t, Config{
		Upstreams: []netip.AddrPort{silent.addr, good.addr},
		Timeout:   timeout,
	})
	start := time.Now()
	r := mustExchange(t, "udp", p.udp, query("slow.example"))
	d := time.Since(start)
	wantA(t, r, "192.0.2.3")
	if silent.udp.Load() != 1 {
		t.Errorf("silent upstream got %d queries, want 1", silent.udp.Load())
	}
	if d < timeout || d > timeout+2*time.Second {
		t.Errorf("took %v, want about %v", d, timeout)
	}
}

func TestFallbackOnServfailAndRefused(t *testing.T) {
	for _, code := range []int{dns.RcodeServerFailure, dns.RcodeRefused} {
		t.Run(dns.RcodeToString[code], func(t *testing.T) {
			bad := startUpstream(t, rcode(code))
			good := startUpstream(t, answerA("192.0.2.4"))
			p := startProxy(t, Config{Upstreams: []netip.AddrPort{bad.addr, good.addr}})
			wantA(t, mustExchange(t, "udp", p.udp, query("a.example")), "192.0.2.4")
			wantA(t, mustExchange(t, "tcp", p.tcp, query("b.example")), "192.0.2.4")
			if bad.udp.Load() != 2 || good.udp.Load() != 2 {
				t.Errorf("queries: first %d, second %d; want 2 each", bad.udp.Load(), good.udp.Load())
			}
		})
	}
}

func TestNXDOMAINIsAnAnswer(t *testing.T) {
	first := startUpstream(t, rcode(dns.RcodeNameError))
	second := startUpstream(t, answerA("192.0.2.5"))
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{first.addr, second.addr}})
	r := mustExchange(t, "udp", p.udp, query("nope.example"))
	if r.Rcode != dns.RcodeNameError {
		t.Errorf("rcode = %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	if second.udp.Load() != 0 {
		t.Errorf("second upstream was asked after NXDOMAIN")
	}
}

func TestAllUpstreamsFail(t *testing.T) {
	servfail := startUpstream(t, rcode(dns.RcodeServerFailure))
	refused := startUpstream(t, rcode(dns.RcodeRefused))
	p := startProxy(t, Config{
		Upstreams: []netip.AddrPort{servfail.addr, refused.addr, closedPort(t), blackhole(t)},
		Timeout:   100 * time.Millisecond,
	})
	for _, network := range []string{"udp", "tcp"} {
		addr := map[string]string{"udp": p.udp, "tcp": p.tcp}[network]
		q := query("fail.example")
		q.Id = 0x4242
		q.SetEdns0(1232, true)
		r := mustExchange(t, network, addr, q)
		if r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: rcode = %s, want SERVFAIL", network, dns.RcodeToString[r.Rcode])
		}
		if r.Id != 0x4242 || len(r.Question) != 1 || r.Question[0].Name != "fail.example." {
			t.Errorf("%s: SERVFAIL reply does not match the query: %v", network, r)
		}
		if r.IsEdns0() == nil {
			t.Errorf("%s: reply to an EDNS0 query lacks OPT", network)
		}
	}
}

func TestTruncatedReplyRetriedOverTCP(t *testing.T) {
	const records = 40 // about 700 bytes: more than 512
	up := startUpstream(t, func(tcp bool, req *dns.Msg) *dns.Msg {
		m := new(dns.Msg).SetReply(req)
		if !tcp {
			m.Truncated = true
			return m
		}
		for i := range records {
			m.Answer = append(m.Answer, aRR(req.Question[0].Name, fmt.Sprintf("10.0.0.%d", i+1)))
		}
		return m
	})
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}})

	// A UDP client with room for the whole answer gets all of it.
	q := query("big.example")
	q.SetEdns0(4096, false)
	r := mustExchange(t, "udp", p.udp, q)
	if r.Truncated || len(r.Answer) != records {
		t.Errorf("EDNS0 UDP client: TC=%v, %d answers; want full answer of %d", r.Truncated, len(r.Answer), records)
	}
	if up.udp.Load() != 1 || up.tcp.Load() != 1 {
		t.Errorf("upstream got %d UDP, %d TCP queries; want 1, 1", up.udp.Load(), up.tcp.Load())
	}

	// A plain UDP client gets at most 512 bytes, with TC set.
	c := rawUDP(t, p.udp)
	if _, err := c.Write(pack(t, query("big.example"))); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n > 512 {
		t.Errorf("reply to a non-EDNS0 UDP client is %d bytes, want <= 512", n)
	}
	r = new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) >= records {
		t.Errorf("non-EDNS0 UDP client: TC=%v, %d answers; want TC and fewer than %d", r.Truncated, len(r.Answer), records)
	}

	// A TCP client gets all of it.
	r = mustExchange(t, "tcp", p.tcp, query("big.example"))
	if r.Truncated || len(r.Answer) != records {
		t.Errorf("TCP client: TC=%v, %d answers; want full answer of %d", r.Truncated, len(r.Answer), records)
	}
}

func TestLocal(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.9"))
	local := func(q dns.Question) ([]dns.RR, bool) {
		switch q.Name {
		case "db.internal.":
			if q.Qtype == dns.TypeA {
				return []dns.RR{aRR(q.Name, "10.1.2.3")}, true
			}
			return nil, true // the name exists, but has no such record
		}
		return nil, false
	}
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, Local: local})

	for _, network := range []string{"udp", "tcp"} {
		addr := map[string]string{"udp": p.udp, "tcp": p.tcp}[network]
		r := mustExchange(t, network, addr, query("db.internal"))
		wantA(t, r, "10.1.2.3")
		if !r.Authoritative {
			t.Errorf("%s: local answer not authoritative", network)
		}
		r = mustExchange(t, network, addr, new(dns.Msg).SetQuestion("db.internal.", dns.TypeAAAA))
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Errorf("%s: AAAA for local name: rcode %s, %d answers; want empty NOERROR",
				network, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
	}
	if n := up.udp.Load() + up.tcp.Load(); n != 0 {
		t.Errorf("upstream contacted %d times for local names", n)
	}
	wantA(t, mustExchange(t, "udp", p.udp, query("elsewhere.example")), "192.0.2.9")

	// Local alone: unclaimed names get SERVFAIL.
	p2 := startProxy(t, Config{Local: local})
	wantA(t, mustExchange(t, "udp", p2.udp, query("db.internal")), "10.1.2.3")
	if r := mustExchange(t, "udp", p2.udp, query("elsewhere.example")); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("unclaimed name without upstreams: rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

func TestTCPClient(t *testing.T) {
	up := startUpstream(t, func(tcp bool, req *dns.Msg) *dns.Msg {
		// Answer with the query's first label as the last octet, so
		// replies can be told apart.
		var octet int
		fmt.Sscanf(req.Question[0].Name, "h%d.", &octet)
		return answerA(fmt.Sprintf("192.0.2.%d", octet))(tcp, req)
	})
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}})

	c, err := net.Dial("tcp", p.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))

	// Several queries on one connection, one at a time.
	co := &dns.Conn{Conn: c}
	for i := 1; i <= 3; i++ {
		q := query(fmt.Sprintf("h%d.example", i))
		if err := co.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if r.Id != q.Id {
			t.Fatalf("reply ID %#x, want %#x", r.Id, q.Id)
		}
		wantA(t, r, fmt.Sprintf("192.0.2.%d", i))
	}

	// Pipelined: all queries written in one go, replies in any order.
	want := map[uint16]string{}
	var batch []byte
	for i := 10; i < 20; i++ {
		q := query(fmt.Sprintf("h%d.example", i))
		q.Id = uint16(1000 + i)
		want[q.Id] = fmt.Sprintf("192.0.2.%d", i)
		batch = append(batch, frame(pack(t, q))...)
	}
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	for range len(want) {
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		ip, ok := want[r.Id]
		if !ok {
			t.Fatalf("unexpected or duplicate reply ID %#x", r.Id)
		}
		delete(want, r.Id)
		wantA(t, r, ip)
	}
}

func TestMalformedInputIgnored(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.10"))
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}})

	valid := pack(t, query("ok.example"))
	response := pack(t, new(dns.Msg).SetReply(query("reflect.example")))
	header := make([]byte, 12) // ID 0, QDCOUNT 1, but no question follows
	binary.BigEndian.PutUint16(header[4:], 1)
	huge := make([]byte, 12) // all counts 0xffff
	for i := 4; i < 12; i++ {
		huge[i] = 0xff
	}
	badLabel := append(append([]byte{}, valid[:12]...), 0xc0, 0xff, 0, 1, 0, 1) // pointer past the end
	junk := make([]byte, 300)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	inputs := [][]byte{{}, {0}, valid[:5], valid[:len(valid)-1], header, huge, badLabel, junk, response}

	// UDP: none of these gets a reply; the next valid query does.
	c := rawUDP(t, p.udp)
	for _, b := range inputs {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	q := query("ok.example")
	q.Id = 0x7777
	if _, err := c.Write(pack(t, q)); err != nil {
		t.Fatal(err)
	}
	r := readMsg(t, c)
	if r.Id != 0x7777 {
		t.Fatalf("first reply has ID %#x, want 0x7777 (a malformed packet was answered?)", r.Id)
	}
	wantA(t, r, "192.0.2.10")

	// TCP: malformed frames are skipped; the connection keeps working.
	tc, err := net.Dial("tcp", p.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	for _, b := range inputs {
		if _, err := tc.Write(frame(b)); err != nil {
			t.Fatal(err)
		}
	}
	co := &dns.Conn{Conn: tc}
	if err := co.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	r, err = co.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	if r.Id != 0x7777 {
		t.Fatalf("first TCP reply has ID %#x, want 0x7777", r.Id)
	}
	wantA(t, r, "192.0.2.10")

	// A connection that dies mid-frame does not disturb the server.
	tc2, err := net.Dial("tcp", p.tcp)
	if err != nil {
		t.Fatal(err)
	}
	tc2.Write([]byte{0x01, 0x00, 0xab})
	tc2.Close()
	wantA(t, mustExchange(t, "udp", p.udp, query("still.example")), "192.0.2.10")
	wantA(t, mustExchange(t, "tcp", p.tcp, query("still.example")), "192.0.2.10")
}

func TestUnsupportedQueries(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.11"))
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}})

	notify := query("zone.example")
	notify.Opcode = dns.OpcodeNotify
	if r := mustExchange(t, "udp", p.udp, notify); r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("NOTIFY: rcode %s, want NOTIMP", dns.RcodeToString[r.Rcode])
	}
	none := query("x.example")
	none.Question = nil
	if r := mustExchange(t, "udp", p.udp, none); r.Rcode != dns.RcodeFormatError {
		t.Errorf("no question: rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
	if n := up.udp.Load(); n != 0 {
		t.Errorf("upstream got %d queries, want 0", n)
	}
}

func TestConcurrentQueries(t *testing.T) {
	up := startUpstream(t, func(tcp bool, req *dns.Msg) *dns.Msg {
		time.Sleep(20 * time.Millisecond) // keep many queries in flight at once
		var a, b int
		fmt.Sscanf(req.Question[0].Name, "c%d-%d.", &a, &b)
		return answerA(fmt.Sprintf("10.9.%d.%d", a, b))(tcp, req)
	})
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}})

	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			network, addr := "udp", p.udp
			if i%4 == 0 {
				network, addr = "tcp", p.tcp
			}
			r, err := exchange(network, addr, query(fmt.Sprintf("c%d-%d.example", i/256, i%256)))
			if err != nil {
				t.Errorf("query %d over %s: %v", i, network, err)
				return
			}
			want := fmt.Sprintf("10.9.%d.%d", i/256, i%256)
			if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != want {
				t.Errorf("query %d: answer %v, want %s", i, r.Answer, want)
			}
		})
	}
	wg.Wait()
}

func TestExcessQueriesDropped(t *testing.T) {
	const timeout = 500 * time.Millisecond
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{blackhole(t)}, Timeout: timeout})

	// Every query occupies a slot for the whole timeout, then gets SERVFAIL;
	// beyond maxInFlight they are dropped.
	c := rawUDP(t, p.udp)
	if uc, ok := c.(*net.UDPConn); ok {
		uc.SetReadBuffer(1 << 20)
	}
	const sent = maxInFlight + 100
	for i := range sent {
		q := query("flood.example")
		q.Id = uint16(i)
		if _, err := c.Write(pack(t, q)); err != nil {
			t.Fatal(err)
		}
	}
	replies := 0
	buf := make([]byte, 512)
	c.SetReadDeadline(time.Now().Add(timeout + time.Second))
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
		replies++
	}
	t.Logf("%d of %d flooding queries answered", replies, sent)
	if replies > maxInFlight || replies < maxInFlight/2 {
		t.Errorf("%d of %d queries answered, want at most %d (and not far fewer)", replies, sent, maxInFlight)
	}

	// Once the flood has drained, queries are served again.
	r := mustExchange(t, "udp", p.udp, query("after.example"))
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

func TestServeStops(t *testing.T) {
	// A query stuck on a silent upstream with a long timeout must not delay
	// shutdown.
	p, err := New(Config{Upstreams: []netip.AddrPort{blackhole(t)}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("context", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errs := make(chan error, 2)
		go func() { errs <- p.ServePacket(ctx, pc) }()
		go func() { errs <- p.ServeStream(ctx, ln) }()

		c := rawUDP(t, pc.LocalAddr().String())
		c.Write(pack(t, query("stuck.example")))
		tc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		(&dns.Conn{Conn: tc}).WriteMsg(query("stuck.example"))
		time.Sleep(100 * time.Millisecond)

		cancel()
		for range 2 {
			select {
			case err := <-errs:
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Serve did not return promptly after cancel")
			}
		}
		// The TCP client sees its connection closed.
		tc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := tc.Read(make([]byte, 1)); err == nil {
			t.Error("client TCP connection still open after shutdown")
		}
	})

	t.Run("closed", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 2)
		go func() { errs <- p.ServePacket(context.Background(), pc) }()
		go func() { errs <- p.ServeStream(context.Background(), ln) }()
		time.Sleep(50 * time.Millisecond)
		pc.Close()
		ln.Close()
		for range 2 {
			select {
			case err := <-errs:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("got %v, want an error wrapping net.ErrClosed", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Serve did not return after its socket was closed")
			}
		}
	})
}

func TestNew(t *testing.T) {
	up := netip.MustParseAddrPort("127.0.0.1:53")
	local := func(dns.Question) ([]dns.RR, bool) { return nil, false }
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"empty", Config{}, false},
		{"upstream", Config{Upstreams: []netip.AddrPort{up}}, true},
		{"local only", Config{Local: local}, true},
		{"invalid upstream", Config{Upstreams: []netip.AddrPort{{}}}, false},
		{"port zero", Config{Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}}, false},
		{"negative timeout", Config{Upstreams: []netip.AddrPort{up}, Timeout: -time.Second}, false},
	} {
		p, err := New(tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%s: New error = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err == nil && p.timeout != defaultTimeout {
			t.Errorf("%s: timeout = %v, want default %v", tc.name, p.timeout, defaultTimeout)
		}
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	got := UpstreamsFromResolvConf([]netip.Addr{
		netip.MustParseAddr("127.0.0.53"),
		{},
		netip.MustParseAddr("::ffff:192.0.2.1"),
		netip.MustParseAddr("2001:db8::1"),
	})
	want := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.53:53"),
		netip.MustParseAddrPort("192.0.2.1:53"),
		netip.MustParseAddrPort("[2001:db8::1]:53"),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestUpstreamsOf: a client with upstreams of its own (a member's --dns)
// is forwarded there, over UDP and TCP alike; other clients go to the
// Proxy's.
func TestUpstreamsOf(t *testing.T) {
	shared := startUpstream(t, answerA("192.0.2.1"))
	own := startUpstream(t, answerA("192.0.2.2"))
	withOwn := netip.MustParseAddr("127.0.0.2")
	p := startProxy(t, Config{
		Upstreams: []netip.AddrPort{shared.addr},
		UpstreamsOf: func(client netip.Addr) []netip.AddrPort {
			if client == withOwn {
				return []netip.AddrPort{own.addr}
			}
			return nil
		},
	})
	wantA(t, mustExchange(t, "udp", p.udp, query("example.com")), "192.0.2.1")
	for _, network := range []string{"udp", "tcp"} {
		local := net.Addr(&net.UDPAddr{IP: withOwn.AsSlice()})
		target := p.udp
		if network == "tcp" {
			local, target = &net.TCPAddr{IP: withOwn.AsSlice()}, p.tcp
		}
		c := &dns.Client{Net: network, Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: local}}
		r, _, err := c.Exchange(query("example.com"), target)
		if err != nil {
			t.Fatalf("%s from %s: %v", network, withOwn, err)
		}
		wantA(t, r, "192.0.2.2")
	}
	if shared.udp.Load() != 1 || own.udp.Load() != 2 {
		t.Errorf("shared upstream got %d queries, the client's own %d; want 1 and 2", shared.udp.Load(), own.udp.Load())
	}
}
