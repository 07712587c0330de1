// Package fakedns is a minimal authoritative DNS server for tests: it knows
// only the A records it is given and answers NXDOMAIN for everything else,
// so a test can tell that an answer came from it and from nowhere else.
package fakedns

import (
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Server serves fixed A records over UDP and TCP on one address.
type Server struct {
	records map[string][]net.IP
	queries atomic.Int64
	servers []*dns.Server
	wg      sync.WaitGroup
}

// Start serves records (name -> IPv4 addresses; names with or without the
// final dot, case-insensitive) on a UDP socket and, when tcp is not nil, a
// TCP listener. The caller keeps ownership of nothing: Close closes both.
func Start(pc net.PacketConn, tcp net.Listener, records map[string][]string) (*Server, error) {
	s := &Server{records: make(map[string][]net.IP)}
	for name, addrs := range records {
		for _, a := range addrs {
			ip := net.ParseIP(a).To4()
			if ip == nil {
				return nil, errors.New("fakedns: not an IPv4 address: " + a)
			}
			key := dns.CanonicalName(name)
			s.records[key] = append(s.records[key], ip)
		}
	}
	h := dns.HandlerFunc(s.serve)
	s.servers = append(s.servers, &dns.Server{PacketConn: pc, Handler: h})
	if tcp != nil {
		s.servers = append(s.servers, &dns.Server{Listener: tcp, Handler: h})
	}
	for _, srv := range s.servers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = srv.ActivateAndServe()
		}()
	}
	return s, nil
}

// Queries is the number of queries answered so far.
func (s *Server) Queries() int64 { return s.queries.Load() }

// Close stops the servers and waits for them.
func (s *Server) Close() {
	for _, srv := range s.servers {
		_ = srv.Shutdown()
	}
	s.wg.Wait()
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	ips, ok := s.records[strings.ToLower(q.Name)]
	switch {
	case !ok:
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA:
		for _, ip := range ips {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   ip,
			})
		}
	default:
		// The name exists but has no records of that type: NOERROR, empty.
	}
	_ = w.WriteMsg(m)
}
