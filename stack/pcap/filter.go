package pcap

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Filter is a small subset of tcpdump's expressions, matched against
// Ethernet frames in Go (no libpcap, no cgo):
//
//	host ADDR, src host ADDR, dst host ADDR   IPv4 or IPv6; ARP's sender and target count
//	net PREFIX, src net PREFIX, dst net PREFIX
//	port N, src port N, dst port N            TCP or UDP
//	ether host MAC, ether src MAC, ether dst MAC
//	tcp, udp, icmp, icmp6, arp, ip, ip6
//	not EXPR, EXPR and EXPR, EXPR or EXPR, ( EXPR )   also !, &&, ||
//
// "and" binds tighter than "or", as in tcpdump. Anything else is an error
// that names the word it could not take.
type Filter struct {
	root node
	text string
}

// String is the expression as given.
func (f *Filter) String() string { return f.text }

// Match reports whether frame, an Ethernet frame, passes. A nil filter
// passes everything.
func (f *Filter) Match(frame []byte) bool {
	if f == nil {
		return true
	}
	var p parsed
	p.parse(frame)
	return f.root.match(&p)
}

// FilterSyntax is the help line for the grammar, for error messages.
const FilterSyntax = "host ADDR, net PREFIX, port N (each with src or dst), ether host MAC, tcp, udp, icmp, icmp6, arp, ip, ip6, combined with and, or, not and parentheses"

// ParseFilter parses expr; an empty (or blank) expression gives nil, which
// matches every frame.
func ParseFilter(expr string) (*Filter, error) {
	toks := tokenize(expr)
	if len(toks) == 0 {
		return nil, nil
	}
	p := &parser{toks: toks}
	n, err := p.or()
	if err == nil && p.pos < len(p.toks) {
		err = fmt.Errorf("unexpected %q", p.toks[p.pos])
	}
	if err != nil {
		return nil, fmt.Errorf("capture filter %q: %w; the filter understands %s", expr, err, FilterSyntax)
	}
	return &Filter{root: n, text: strings.Join(toks, " ")}, nil
}

func tokenize(s string) []string {
	var out []string
	cur := strings.Builder{}
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			flush()
		case c == '(' || c == ')':
			flush()
			out = append(out, string(c))
		case c == '!' && !(i+1 < len(s) && s[i+1] == '='):
			flush()
			out = append(out, "not")
		case (c == '&' || c == '|') && i+1 < len(s) && s[i+1] == c:
			flush()
			out = append(out, map[byte]string{'&': "and", '|': "or"}[c])
			i++
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return out
}

type parser struct {
	toks []string
	pos  int
}

func (p *parser) peek() string {
	if p.pos < len(p.toks) {
		return strings.ToLower(p.toks[p.pos])
	}
	return ""
}

func (p *parser) next() (string, error) {
	if p.pos >= len(p.toks) {
		return "", fmt.Errorf("the expression ends too soon")
	}
	t := p.toks[p.pos]
	p.pos++
	return t, nil
}

func (p *parser) or() (node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek() == "or" {
		p.pos++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = orNode{l, r}
	}
	return l, nil
}

func (p *parser) and() (node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peek() == "and" {
		p.pos++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = andNode{l, r}
	}
	return l, nil
}

func (p *parser) unary() (node, error) {
	switch p.peek() {
	case "not":
		p.pos++
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	case "(":
		p.pos++
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("missing )")
		}
		p.pos++
		return n, nil
	}
	return p.primitive()
}

func (p *parser) primitive() (node, error) {
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	switch w := strings.ToLower(t); w {
	case "tcp":
		return protoNode{l4: 6}, nil
	case "udp":
		return protoNode{l4: 17}, nil
	case "icmp":
		return protoNode{l4: 1, v4only: true}, nil
	case "icmp6":
		return protoNode{l4: 58, v6only: true}, nil
	case "arp":
		return etherNode{etherARP}, nil
	case "ip":
		return etherNode{etherIPv4}, nil
	case "ip6":
		return etherNode{etherIPv6}, nil
	case "src", "dst":
		dir := dirSrc
		if w == "dst" {
			dir = dirDst
		}
		return p.qualified(dir)
	case "host", "net", "port":
		p.pos--
		return p.qualified(dirAny)
	case "ether":
		return p.ether()
	case ")", "and", "or":
		return nil, fmt.Errorf("unexpected %q", t)
	default:
		return nil, fmt.Errorf("unknown word %q", t)
	}
}

// qualified parses host, net or port after an optional src or dst.
func (p *parser) qualified(dir direction) (node, error) {
	kind, err := p.next()
	if err != nil {
		return nil, err
	}
	kind = strings.ToLower(kind)
	if kind != "host" && kind != "net" && kind != "port" {
		return nil, fmt.Errorf("unknown word %q after src or dst (want host, net or port)", kind)
	}
	arg, err := p.next()
	if err != nil {
		return nil, err
	}
	switch kind {
	case "host":
		a, err := netip.ParseAddr(arg)
		if err != nil {
			return nil, fmt.Errorf("host %q: want an IPv4 or IPv6 address (names are not resolved)", arg)
		}
		return netNode{dir: dir, prefix: netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())}, nil
	case "net":
		pf, err := netip.ParsePrefix(arg)
		if err != nil {
			return nil, fmt.Errorf("net %q: want a prefix such as 198.51.100.0/24", arg)
		}
		return netNode{dir: dir, prefix: pf.Masked()}, nil
	}
	n, err := strconv.ParseUint(arg, 10, 16) // port
	if err != nil {
		return nil, fmt.Errorf("port %q: want a number from 0 to 65535", arg)
	}
	return portNode{dir: dir, port: uint16(n)}, nil
}

// ether parses "ether host|src|dst MAC".
func (p *parser) ether() (node, error) {
	kind, err := p.next()
	if err != nil {
		return nil, err
	}
	dir := dirAny
	switch strings.ToLower(kind) {
	case "host":
	case "src":
		dir = dirSrc
	case "dst":
		dir = dirDst
	default:
		return nil, fmt.Errorf("unknown word %q after ether (want host, src or dst)", kind)
	}
	arg, err := p.next()
	if err != nil {
		return nil, err
	}
	mac, err := parseMAC(arg)
	if err != nil {
		return nil, err
	}
	return macNode{dir: dir, mac: mac}, nil
}

func parseMAC(s string) ([6]byte, error) {
	var m [6]byte
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return m, fmt.Errorf("ether address %q: want six hex bytes such as 02:42:ac:11:00:02", s)
	}
	for i, part := range parts {
		b, err := strconv.ParseUint(part, 16, 8)
		if err != nil || len(part) > 2 {
			return m, fmt.Errorf("ether address %q: want six hex bytes such as 02:42:ac:11:00:02", s)
		}
		m[i] = byte(b)
	}
	return m, nil
}

// EtherTypes the filter knows.
const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	etherIPv6 = 0x86dd
)

// parsed is what the filter reads of one frame; a field that the frame
// does not have is left zero (and its ok flag false).
type parsed struct {
	eth            bool // at least an Ethernet header
	src, dst       [6]byte
	etherType      uint16
	srcIP, dstIP   netip.Addr // IPv4, IPv6, or ARP's sender and target
	l4             uint8      // IP protocol (IPv6: the first next header)
	hasPorts       bool
	srcPort, dPort uint16
}

func (p *parsed) parse(f []byte) {
	if len(f) < 14 {
		return
	}
	p.eth = true
	p.dst, p.src = [6]byte(f[0:6]), [6]byte(f[6:12])
	p.etherType = binary.BigEndian.Uint16(f[12:14])
	l3 := f[14:]
	var l4 []byte
	switch p.etherType {
	case etherIPv4:
		if len(l3) < 20 || l3[0]>>4 != 4 {
			return
		}
		ihl := int(l3[0]&0x0f) * 4
		p.srcIP = netip.AddrFrom4([4]byte(l3[12:16]))
		p.dstIP = netip.AddrFrom4([4]byte(l3[16:20]))
		p.l4 = l3[9]
		// Only the first fragment has the ports.
		if ihl >= 20 && len(l3) >= ihl && binary.BigEndian.Uint16(l3[6:8])&0x1fff == 0 {
			l4 = l3[ihl:]
		}
	case etherIPv6:
		if len(l3) < 40 || l3[0]>>4 != 6 {
			return
		}
		p.srcIP = netip.AddrFrom16([16]byte(l3[8:24]))
		p.dstIP = netip.AddrFrom16([16]byte(l3[24:40]))
		p.l4 = l3[6]
		l4 = l3[40:]
	case etherARP:
		if len(l3) < 28 || binary.BigEndian.Uint16(l3[2:4]) != etherIPv4 || l3[4] != 6 || l3[5] != 4 {
			return
		}
		p.srcIP = netip.AddrFrom4([4]byte(l3[14:18]))
		p.dstIP = netip.AddrFrom4([4]byte(l3[24:28]))
		return
	default:
		return
	}
	if (p.l4 == 6 || p.l4 == 17) && len(l4) >= 4 {
		p.hasPorts = true
		p.srcPort = binary.BigEndian.Uint16(l4[0:2])
		p.dPort = binary.BigEndian.Uint16(l4[2:4])
	}
}

type direction int

const (
	dirAny direction = iota
	dirSrc
	dirDst
)

func (d direction) test(src, dst bool) bool {
	switch d {
	case dirSrc:
		return src
	case dirDst:
		return dst
	}
	return src || dst
}

type node interface{ match(*parsed) bool }

type (
	andNode   struct{ l, r node }
	orNode    struct{ l, r node }
	notNode   struct{ n node }
	etherNode struct{ t uint16 }
	protoNode struct {
		l4             uint8
		v4only, v6only bool
	}
	netNode struct {
		dir    direction
		prefix netip.Prefix
	}
	portNode struct {
		dir  direction
		port uint16
	}
	macNode struct {
		dir direction
		mac [6]byte
	}
)

func (n andNode) match(p *parsed) bool   { return n.l.match(p) && n.r.match(p) }
func (n orNode) match(p *parsed) bool    { return n.l.match(p) || n.r.match(p) }
func (n notNode) match(p *parsed) bool   { return !n.n.match(p) }
func (n etherNode) match(p *parsed) bool { return p.etherType == n.t }

func (n protoNode) match(p *parsed) bool {
	switch {
	case n.v4only && p.etherType != etherIPv4, n.v6only && p.etherType != etherIPv6:
		return false
	}
	return (p.etherType == etherIPv4 || p.etherType == etherIPv6) && p.srcIP.IsValid() && p.l4 == n.l4
}

func (n netNode) match(p *parsed) bool {
	if !p.srcIP.IsValid() {
		return false
	}
	return n.dir.test(n.prefix.Contains(p.srcIP), n.prefix.Contains(p.dstIP))
}

func (n portNode) match(p *parsed) bool {
	return p.hasPorts && n.dir.test(p.srcPort == n.port, p.dPort == n.port)
}

func (n macNode) match(p *parsed) bool {
	return p.eth && n.dir.test(p.src == n.mac, p.dst == n.mac)
}
