package hosts

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
)

// RenderResolvConf renders /etc/resolv.conf in current Docker's order:
// nameserver lines, then one search line, then one options line. Empty parts
// write no line, nor do values with a space or a control character.
// (Docker 20.10 wrote the search line first; the resolver does not care
// about the order.)
func RenderResolvConf(nameservers []netip.Addr, search, options []string) []byte {
	var b bytes.Buffer
	for _, ns := range nameservers {
		if s := ns.String(); ns.IsValid() && isField(s) {
			b.WriteString("nameserver " + s + "\n")
		}
	}
	search, options = fields(search), fields(options)
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	if len(options) > 0 {
		b.WriteString("options " + strings.Join(options, " ") + "\n")
	}
	return b.Bytes()
}

// fields is ss without the values that are not one field (a newline in a
// search domain would write a line of its own making).
func fields(ss []string) []string {
	var out []string
	for _, s := range ss {
		if isField(s) {
			out = append(out, s)
		}
	}
	return out
}

// ParseResolvConf reads the parts of a resolv.conf that a sandbox inherits,
// the way glibc reads them: lines starting with '#' or ';' are comments,
// "domain" and "search" replace each other (the last one wins), "options"
// lines add up, and a nameserver that is not an IP address is ignored. An
// IPv6 nameserver keeps its %zone, because a link-local server cannot be
// reached without it. Unknown keywords are ignored.
func ParseResolvConf(data []byte) (nameservers []netip.Addr, search []string, options []string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0][0] == '#' || fields[0][0] == ';' {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if addr, err := netip.ParseAddr(fields[1]); err == nil {
				nameservers = append(nameservers, addr)
			}
		case "domain", "search":
			search = fields[1:]
		case "options":
			options = append(options, fields[1:]...)
		}
	}
	return nameservers, search, options
}
