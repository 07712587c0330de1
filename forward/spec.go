package forward

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Proto is the transport protocol of a published port.
type Proto string

// The protocols a port can be published for.
const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// Mapping is one published port: the host listens on HostIP:HostPort and
// forwards to ContainerPort of the sandbox. It is stored in sandbox records
// and sent to the daemon, hence the tags; the field names of the JSON are
// part of those formats.
type Mapping struct {
	// HostIP is the address to listen on; the zero Addr means every IPv4 and
	// IPv6 address.
	HostIP netip.Addr `json:"host_ip,omitzero"`
	// HostPort is the port to listen on; 0 means pick a free one.
	HostPort uint16 `json:"host_port"`
	// HostPortEnd is 0, unless the spec gave a host range for a single
	// container port ("8000-8010:80"): then the host listens on the first
	// free port of HostPort..HostPortEnd, as Docker does.
	HostPortEnd   uint16 `json:"host_port_end,omitempty"`
	ContainerPort uint16 `json:"container_port"`
	Proto         Proto  `json:"proto"`
}

// specForm is the grammar quoted in every parse error.
const specForm = "[HOST_IP:][HOST_PORT[-END]:]PORT[-END][/tcp|udp]"

// ParseSpec parses Docker's -p/--publish value,
// [HOST_IP:][HOST_PORT[-END]:]PORT[-END][/tcp|udp], into one Mapping per
// container port. Like Docker it takes an IPv6 HOST_IP bracketed
// ([::1]:8080:80) or bare (::1:8080:80), an empty or 0 HOST_PORT as "pick a
// free one", and a protocol in any case. Unlike Docker it rejects container
// port 0, an empty protocol ("80/") and protocols other than tcp and udp.
func ParseSpec(spec string) ([]Mapping, error) {
	fail := func(format string, args ...any) ([]Mapping, error) {
		return nil, fmt.Errorf("invalid port spec %q: %s (want %s)", spec, fmt.Sprintf(format, args...), specForm)
	}
	if spec == "" {
		return fail("it is empty")
	}

	rest, protoText, hasProto := strings.Cut(spec, "/")
	proto := TCP
	if hasProto {
		switch strings.ToLower(protoText) {
		case "tcp":
		case "udp":
			proto = UDP
		case "":
			return fail("protocol is empty")
		default:
			return fail("unknown protocol %q", protoText)
		}
	}

	ipText, hostText, containerText, err := splitSpec(rest)
	if err != nil {
		return fail("%v", err)
	}
	var hostIP netip.Addr
	if ipText != "" {
		if hostIP, err = netip.ParseAddr(ipText); err != nil {
			return fail("host IP %q is not an IP address", ipText)
		}
		// netip takes any zone; an interface name has no space or control
		// character, and one would break the lines the mapping is shown in.
		if strings.ContainsFunc(hostIP.Zone(), func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) {
			return fail("host IP %q has a zone that is not an interface name", ipText)
		}
	}

	if containerText == "" {
		return fail("container port is missing")
	}
	cFirst, cLast, err := parsePortRange(containerText)
	if err != nil {
		return fail("container %v", err)
	}

	var hFirst, hLast uint16
	// Docker reads an explicit host port 0 as "pick a free one" too.
	if hostText != "" && hostText != "0" {
		if hFirst, hLast, err = parsePortRange(hostText); err != nil {
			return fail("host %v", err)
		}
	}

	n := int(cLast-cFirst) + 1
	if hFirst == 0 || int(hLast-hFirst)+1 == n {
		ms := make([]Mapping, 0, n)
		for i := range n {
			m := Mapping{HostIP: hostIP, ContainerPort: cFirst + uint16(i), Proto: proto}
			if hFirst != 0 {
				m.HostPort = hFirst + uint16(i)
			}
			ms = append(ms, m)
		}
		return ms, nil
	}
	if n == 1 {
		return []Mapping{{HostIP: hostIP, HostPort: hFirst, HostPortEnd: hLast, ContainerPort: cFirst, Proto: proto}}, nil
	}
	return fail("ranges %q and %q differ in length", hostText, containerText)
}

// splitSpec splits IP:HOST_PORT:PORT (protocol already removed) into its
// three texts, each of which may be empty.
func splitSpec(s string) (ip, host, container string, err error) {
	if rest, ok := strings.CutPrefix(s, "["); ok {
		ip, rest, ok = strings.Cut(rest, "]")
		if !ok {
			return "", "", "", fmt.Errorf("host IP %q lacks its closing ']'", s)
		}
		ports, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return "", "", "", fmt.Errorf("host IP [%s] must be followed by ':'", escaped(ip))
		}
		host, container, ok = strings.Cut(ports, ":")
		if !ok || strings.Contains(container, ":") {
			return "", "", "", fmt.Errorf("want HOST_PORT:PORT after [%s]:, got %q", escaped(ip), ports)
		}
		return ip, host, container, nil
	}
	parts := strings.Split(s, ":")
	n := len(parts)
	switch n {
	case 1:
		return "", "", parts[0], nil
	case 2:
		return "", parts[0], parts[1], nil
	}
	// Everything before the last two colons is the address, so a bare IPv6
	// address works as it does in Docker.
	ip = strings.Join(parts[:n-2], ":")
	if strings.Contains(ip, ":") {
		if _, perr := netip.ParseAddr(ip); perr != nil {
			return "", "", "", fmt.Errorf("too many colons: host IP %q is not an IP address (bracket IPv6 addresses: [::1]:8080:80)", ip)
		}
	}
	return ip, parts[n-2], parts[n-1], nil
}

// escaped is s with what %q escapes escaped, but unquoted: an error that
// shows user input stays one line.
func escaped(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// parsePortRange parses PORT or FIRST-LAST, each in 1-65535, FIRST <= LAST.
// Its errors start with "port" so that the caller can say whose port it is.
func parsePortRange(s string) (first, last uint16, err error) {
	firstText, lastText, isRange := strings.Cut(s, "-")
	if !isRange {
		if first, err = parsePort(s); err != nil {
			return 0, 0, fmt.Errorf("port %w", err)
		}
		return first, first, nil
	}
	if first, err = parsePort(firstText); err != nil {
		return 0, 0, fmt.Errorf("port range %q: %w", s, err)
	}
	if last, err = parsePort(lastText); err != nil {
		return 0, 0, fmt.Errorf("port range %q: %w", s, err)
	}
	if last < first {
		return 0, 0, fmt.Errorf("port range %q runs backwards (want LOW-HIGH)", s)
	}
	return first, last, nil
}

func parsePort(s string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("%q is not a number in 1-65535", s)
	}
	return uint16(p), nil
}

// String renders m as Docker's PORTS column does, for example
// 0.0.0.0:8080->80/tcp, [::1]:8080->80/tcp or 0.0.0.0:8000-8010->80/tcp
// (a host range not yet narrowed to one port). An all-address mapping shows
// its IPv4 form; FormatPorts shows both.
func (m Mapping) String() string {
	ip := m.HostIP
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	host := strconv.Itoa(int(m.HostPort))
	if m.HostPortEnd != 0 {
		host += "-" + strconv.Itoa(int(m.HostPortEnd))
	}
	return fmt.Sprintf("%s->%d/%s", net.JoinHostPort(ip.String(), host), m.ContainerPort, m.Proto)
}

// Bindings are the mappings one per host address they listen on, as
// Docker lists them (docker port, NetworkSettings.Ports): a mapping
// without a host address is two, 0.0.0.0 then ::.
func Bindings(ms []Mapping) []Mapping {
	var out []Mapping
	for _, m := range ms {
		if m.HostIP.IsValid() {
			out = append(out, m)
			continue
		}
		for _, ip := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
			m.HostIP = ip
			out = append(out, m)
		}
	}
	return out
}

// FormatPorts renders a PORTS column as the docker CLI does: an all-address
// mapping appears once for 0.0.0.0 and once for [::]; the entries are sorted
// by container port, address, host port and protocol; and runs of
// consecutive ports whose host port equals the container port collapse into
// a range (0.0.0.0:8000-8001->8000-8001/tcp), listed first, while the other
// mappings follow one by one (0.0.0.0:8000->80/tcp, 0.0.0.0:8001->81/tcp).
// Pass the mappings as bound, with the host ports that were picked.
func FormatPorts(ms []Mapping) string {
	rows := Bindings(ms)
	slices.SortFunc(rows, func(a, b Mapping) int {
		return cmp.Or(
			cmp.Compare(a.ContainerPort, b.ContainerPort),
			a.HostIP.Compare(b.HostIP),
			cmp.Compare(a.HostPort, b.HostPort),
			cmp.Compare(a.Proto, b.Proto),
		)
	})

	type groupKey struct {
		ip    netip.Addr
		proto Proto
	}
	type group struct{ first, last uint16 }
	var (
		out     []string
		singles []string
		groups  = map[groupKey]*group{}
		order   []groupKey // first-seen order of the groups
	)
	formGroup := func(k groupKey, g *group) string {
		ports := strconv.Itoa(int(g.first))
		if g.last != g.first {
			ports += "-" + strconv.Itoa(int(g.last))
		}
		return fmt.Sprintf("%s->%s/%s", net.JoinHostPort(k.ip.String(), ports), ports, k.proto)
	}
	for _, r := range rows {
		if r.HostPort != r.ContainerPort || r.HostPortEnd != 0 {
			singles = append(singles, r.String())
			continue
		}
		k := groupKey{r.HostIP, r.Proto}
		g := groups[k]
		switch {
		case g == nil:
			groups[k] = &group{r.ContainerPort, r.ContainerPort}
			order = append(order, k)
		case r.ContainerPort == g.last+1:
			g.last = r.ContainerPort
		default:
			// The run broke: emit it now, and the group's key keeps its
			// place for the new run, as the docker CLI does.
			out = append(out, formGroup(k, g))
			groups[k] = &group{r.ContainerPort, r.ContainerPort}
		}
	}
	for _, k := range order {
		out = append(out, formGroup(k, groups[k]))
	}
	return strings.Join(append(out, singles...), ", ")
}
