// Package resolver is the DNS forwarder that runs on the host side of a
// sandbox's network.
//
// The sandbox's resolv.conf names an address that the userspace network
// stack serves; the stack hands this package a net.PacketConn (UDP) and a
// net.Listener (TCP) bound to that address, port 53. Each query is answered
// from Config.Local when it claims the name, and otherwise forwarded to the
// upstream resolvers over ordinary host sockets, so a resolver on the host's
// loopback (such as systemd-resolved at 127.0.0.53) works.
//
// Forwarding, for queries arriving over either transport: the upstreams are
// tried in order, each over UDP first; a truncated (TC) UDP reply is retried
// over TCP with the same upstream. Each UDP or TCP try gets Config.Timeout.
// An upstream is skipped after a timeout, a network error, a malformed or
// mismatched reply, one without the QR (response) bit, or an RCODE of
// SERVFAIL or REFUSED; any other reply, NXDOMAIN included, is the answer.
// When no upstream answers, the client gets SERVFAIL. Every query to an
// upstream uses a fresh random ID and a fresh socket; the reply is returned
// with the client's ID.
//
// Replies to UDP clients are truncated (TC set) to 512 bytes, or to the
// EDNS0 payload size the client advertised.
//
// Each client address has its own rate (Config.PerClient, by default 200
// messages a second with a burst of 400), taken before a message is parsed:
// past it, messages are dropped unanswered (the client retries, as after a
// loss) and counted, so that one member cannot make the network process
// parse a flood or forward it upstream.
//
// Only standard queries (opcode QUERY) with exactly one question are
// handled: other opcodes get NOTIMP and other question counts FORMERR.
// Malformed messages, and messages with the QR (response) bit set, are
// dropped without a reply.
package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/netns-run/netns-run/hosts"
	"github.com/netns-run/netns-run/stack/sourcerate"
)

const (
	// defaultTimeout is the per-try upstream timeout when Config.Timeout is zero.
	defaultTimeout = 2 * time.Second
	// maxInFlight bounds the queries being answered at once by one Proxy,
	// over all its transports. Excess UDP queries are dropped (the client
	// retries); TCP connections wait for a slot.
	maxInFlight = 256
	// maxTCPConns bounds the open client TCP connections per ServeStream;
	// excess connections are closed at once.
	maxTCPConns = 64
	// maxPipelined bounds the queries in flight on one client TCP connection.
	maxPipelined = 16
	// tcpIdleTimeout closes a client TCP connection that sends no query for
	// this long (once its outstanding replies are written).
	tcpIdleTimeout = 10 * time.Second
	// ednsUDPSize is the payload size advertised in replies built locally.
	ednsUDPSize = 1232
	// headerLen is the size of a DNS message header.
	headerLen = 12
)

// DefaultPerClient is the rate of queries one client address may send: far
// above what a resolver library asks for (a few a page load, cached), far
// below what would make the upstreams or this process busy.
var DefaultPerClient = sourcerate.Limit{PerSecond: 200, Burst: 400}

// Config configures a Proxy.
type Config struct {
	// Upstreams are the resolvers queries are forwarded to, tried in order.
	Upstreams []netip.AddrPort
	// UpstreamsOf, when not nil, gives a client's own upstreams (a
	// member's --dns on a shared network), used instead of Upstreams when
	// it returns any. It is called concurrently.
	UpstreamsOf func(client netip.Addr) []netip.AddrPort
	// Timeout bounds each try (UDP, or the TCP retry) with one upstream.
	// Zero means 2s.
	Timeout time.Duration
	// Local, when not nil, is asked first about each query's question. If it
	// returns ok, the query is answered with answers (an empty NOERROR reply
	// when there are none) and no upstream is contacted. It is called
	// concurrently; the returned records are copied, not modified.
	Local func(q dns.Question) (answers []dns.RR, ok bool)
	// PerClient bounds the queries each client address may send; zero
	// fields take DefaultPerClient's.
	PerClient sourcerate.Limit
	// Logger receives drops and failures at debug level. Nil means no logging.
	Logger *slog.Logger
}

// Stats are a Proxy's counters since it started.
type Stats struct {
	// Local, Forwarded and Failed are the queries answered: from Local,
	// with an upstream's reply, and with SERVFAIL as no upstream answered.
	Local, Forwarded, Failed uint64
	// UpstreamErrors are the tries of one upstream that failed (a
	// timeout, a network error, a bad reply, SERVFAIL or REFUSED).
	UpstreamErrors uint64
	// Busy are the UDP queries dropped as too many were in flight.
	Busy uint64
	// RateLimited are the queries dropped over their client's rate, by
	// client address (nonzero only).
	RateLimited map[netip.Addr]uint64
}

// counters are the Proxy's Stats as they happen.
type counters struct {
	local, forwarded, failed, upstreamErrors, busy atomic.Uint64
}

// Proxy is a DNS forwarder. Its methods may be called concurrently, and one
// Proxy may serve several PacketConns and Listeners at once; they share the
// bound on queries in flight.
type Proxy struct {
	upstreams   []netip.AddrPort
	upstreamsOf func(netip.Addr) []netip.AddrPort
	timeout     time.Duration
	local       func(dns.Question) ([]dns.RR, bool)
	log         *slog.Logger
	inflight    chan struct{} // semaphore: one token per query being answered
	perClient   *sourcerate.Table
	counts      counters
}

// New returns a Proxy for cfg. It fails if cfg has neither upstreams nor
// Local, or has an invalid upstream or a negative Timeout.
func New(cfg Config) (*Proxy, error) {
	if len(cfg.Upstreams) == 0 && cfg.Local == nil && cfg.UpstreamsOf == nil {
		return nil, errors.New("resolver: no upstreams and no Local resolver")
	}
	for _, u := range cfg.Upstreams {
		if !u.IsValid() || u.Port() == 0 {
			return nil, fmt.Errorf("resolver: invalid upstream %q", u)
		}
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("resolver: negative timeout %v", cfg.Timeout)
	}
	limit := DefaultPerClient
	if cfg.PerClient.PerSecond > 0 {
		limit.PerSecond = cfg.PerClient.PerSecond
	}
	if cfg.PerClient.Burst > 0 {
		limit.Burst = cfg.PerClient.Burst
	}
	p := &Proxy{
		upstreams:   append([]netip.AddrPort(nil), cfg.Upstreams...),
		upstreamsOf: cfg.UpstreamsOf,
		timeout:     cfg.Timeout,
		local:       cfg.Local,
		log:         cfg.Logger,
		inflight:    make(chan struct{}, maxInFlight),
		perClient:   sourcerate.New(limit),
	}
	if p.timeout == 0 {
		p.timeout = defaultTimeout
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// HostUpstreams are the nameservers of the host's /etc/resolv.conf, in
// order, on port 53; 127.0.0.1:53 when it names none, as glibc assumes.
func HostUpstreams() []netip.AddrPort {
	if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		ns, _, _ := hosts.ParseResolvConf(data)
		if ups := UpstreamsFromResolvConf(ns); len(ups) > 0 {
			return ups
		}
	}
	return []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
}

// UpstreamsFromResolvConf turns the nameserver addresses of a resolv.conf
// into upstreams on port 53, in the same order. Invalid addresses are
// skipped and IPv4-mapped IPv6 addresses are unmapped.
func UpstreamsFromResolvConf(nameservers []netip.Addr) []netip.AddrPort {
	ups := make([]netip.AddrPort, 0, len(nameservers))
	for _, a := range nameservers {
		if a.IsValid() {
			ups = append(ups, netip.AddrPortFrom(a.Unmap(), 53))
		}
	}
	return ups
}

// Stats returns the Proxy's counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Local: p.counts.local.Load(), Forwarded: p.counts.forwarded.Load(), Failed: p.counts.failed.Load(),
		UpstreamErrors: p.counts.upstreamErrors.Load(), Busy: p.counts.busy.Load(),
		RateLimited: p.perClient.Refused(),
	}
}

// ForgetClient drops client's rate and its count of dropped queries: the
// member at that address left, and the next one starts afresh.
func (p *Proxy) ForgetClient(client netip.Addr) { p.perClient.Forget(client) }

// admit says whether client is within its rate; a query over it is to be
// dropped. Such drops are counted (Stats), not logged: a flood would flood
// the log.
func (p *Proxy) admit(client net.Addr) bool {
	return p.perClient.Allow(clientAddr(client))
}

// clientAddr is the IP address of a client's UDP or TCP address.
func clientAddr(client net.Addr) netip.Addr {
	switch a := client.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// tryAcquire takes an in-flight slot if one is free.
func (p *Proxy) tryAcquire() bool {
	select {
	case p.inflight <- struct{}{}:
		return true
	default:
		return false
	}
}

// acquire waits for an in-flight slot; it fails only when ctx is done.
func (p *Proxy) acquire(ctx context.Context) bool {
	select {
	case p.inflight <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *Proxy) release() { <-p.inflight }

// recoverPanic stops a panic in the answering of one query (from a bug, or
// from Config.Local) from taking down the process.
func (p *Proxy) recoverPanic(transport string) {
	if r := recover(); r != nil {
		p.log.Error("resolver: panic while answering query",
			"transport", transport, "panic", r, "stack", string(debug.Stack()))
	}
}

// parse unpacks a client message. It returns nil, logging why, for messages
// that are to be dropped: malformed ones and responses.
func (p *Proxy) parse(b []byte, transport string, client net.Addr) *dns.Msg {
	if len(b) < headerLen {
		p.log.Debug("resolver: dropping short message",
			"transport", transport, "client", client, "len", len(b))
		return nil
	}
	req := new(dns.Msg)
	if err := req.Unpack(b); err != nil {
		p.log.Debug("resolver: dropping malformed message",
			"transport", transport, "client", client, "err", err)
		return nil
	}
	// Unpack tolerates a message that ends before the sections its header
	// announces; such a message is malformed all the same.
	if int(binary.BigEndian.Uint16(b[4:])) != len(req.Question) ||
		int(binary.BigEndian.Uint16(b[6:])) != len(req.Answer) ||
		int(binary.BigEndian.Uint16(b[8:])) != len(req.Ns) ||
		int(binary.BigEndian.Uint16(b[10:])) != len(req.Extra) {
		p.log.Debug("resolver: dropping message with missing records",
			"transport", transport, "client", client)
		return nil
	}
	if req.Response {
		p.log.Debug("resolver: dropping message with QR set",
			"transport", transport, "client", client)
		return nil
	}
	return req
}

// resolve answers req of client. It returns nil only when ctx is done.
func (p *Proxy) resolve(ctx context.Context, client net.Addr, req *dns.Msg) *dns.Msg {
	if req.Opcode != dns.OpcodeQuery {
		return synth(req, dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return synth(req, dns.RcodeFormatError)
	}
	q := req.Question[0]
	if p.local != nil {
		if answers, ok := p.local(q); ok {
			m := synth(req, dns.RcodeSuccess)
			m.Authoritative = true
			m.Answer = make([]dns.RR, 0, len(answers))
			for _, rr := range answers {
				if rr != nil {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
			p.counts.local.Add(1)
			return m
		}
	}
	if resp := p.forward(ctx, p.upstreamsFor(client), req); resp != nil {
		resp.Id = req.Id
		p.counts.forwarded.Add(1)
		return resp
	}
	if ctx.Err() != nil {
		return nil
	}
	p.counts.failed.Add(1)
	p.log.Debug("resolver: no upstream answered, replying SERVFAIL",
		"qname", q.Name, "qtype", dns.Type(q.Qtype))
	return synth(req, dns.RcodeServerFailure)
}

// synth builds a reply to req with the given RCODE.
func synth(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(ednsUDPSize, opt.Do())
	}
	return m
}

// upstreamsFor is where client's queries go: its own upstreams if it has
// any, else the Proxy's.
func (p *Proxy) upstreamsFor(client net.Addr) []netip.AddrPort {
	if p.upstreamsOf == nil {
		return p.upstreams
	}
	if own := p.upstreamsOf(clientAddr(client)); len(own) > 0 {
		return own
	}
	return p.upstreams
}

// forward asks upstreams in order and returns the first answer, or nil.
func (p *Proxy) forward(ctx context.Context, upstreams []netip.AddrPort, req *dns.Msg) *dns.Msg {
	for _, up := range upstreams {
		if ctx.Err() != nil {
			return nil
		}
		resp, err := p.tryUpstream(ctx, up, req)
		if err == nil {
			return resp
		}
		if ctx.Err() == nil {
			p.counts.upstreamErrors.Add(1)
			p.log.Debug("resolver: upstream failed",
				"upstream", up, "qname", req.Question[0].Name,
				"qtype", dns.Type(req.Question[0].Qtype), "err", err)
		}
	}
	return nil
}

// tryUpstream queries one upstream over UDP, and over TCP if the UDP reply is
// truncated. It fails unless the upstream answers with an RCODE other than
// SERVFAIL and REFUSED.
func (p *Proxy) tryUpstream(ctx context.Context, up netip.AddrPort, req *dns.Msg) (*dns.Msg, error) {
	resp, err := p.exchange(ctx, "udp", up, req)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	if resp.Truncated {
		resp, err = p.exchange(ctx, "tcp", up, req)
		if err != nil {
			return nil, fmt.Errorf("tcp retry after truncated reply: %w", err)
		}
	}
	switch resp.Rcode {
	case dns.RcodeServerFailure, dns.RcodeRefused:
		return nil, fmt.Errorf("upstream replied %s", dns.RcodeToString[resp.Rcode])
	}
	return resp, nil
}

// exchange sends req to up over network ("udp" or "tcp") from a new host
// socket, under a fresh ID, and reads the reply within p.timeout.
func (p *Proxy) exchange(ctx context.Context, network string, up netip.AddrPort, req *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	var d net.Dialer
	c, err := d.DialContext(ctx, network, up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// The deadline reports timeouts as such; closing on cancellation makes
	// shutdown prompt.
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	q := req.Copy()
	q.Id = dns.Id()
	co := &dns.Conn{Conn: c, UDPSize: uint16(clientUDPSize(req))}
	if err := co.WriteMsg(q); err != nil {
		return nil, err
	}
	for {
		r, err := co.ReadMsg()
		if err != nil {
			return nil, err
		}
		if r.Id != q.Id {
			if network == "udp" {
				continue // perhaps a late reply to an earlier query; keep waiting
			}
			return nil, dns.ErrId
		}
		if !r.Response {
			return nil, errors.New("reply is not a response (QR unset)")
		}
		if !sameQuestion(q, r) {
			return nil, errors.New("reply is for another question")
		}
		return r, nil
	}
}

// sameQuestion reports whether reply r is for query q's question. Replies
// without a question section (some servers send those with errors) pass.
func sameQuestion(q, r *dns.Msg) bool {
	if len(r.Question) == 0 {
		return true
	}
	if len(r.Question) != len(q.Question) {
		return false
	}
	a, b := q.Question[0], r.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}

// clientUDPSize is the largest UDP reply req's sender accepts: 512 bytes,
// or the EDNS0 payload size it advertised if larger.
func clientUDPSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	return dns.MinMsgSize
}
