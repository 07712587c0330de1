// Package hosts renders and parses the files that give a sandbox its names
// (/etc/hosts, /etc/resolv.conf, /etc/hostname) and places them in the
// sandbox's own mount namespace.
package hosts

import (
	"bytes"
	"net/netip"
	"strings"
	"unicode"
)

// Entry is one /etc/hosts line: an address and the names that resolve to it.
type Entry struct {
	IP    netip.Addr
	Names []string
}

// hostsHeader is the fixed head of every /etc/hosts Docker writes, byte for byte.
const hostsHeader = "127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::0\tip6-localnet\n" +
	"ff00::0\tip6-mcastprefix\n" +
	"ff02::1\tip6-allnodes\n" +
	"ff02::2\tip6-allrouters\n"

// RenderHosts renders /etc/hosts in Docker's layout: the fixed loopback and
// IPv6 lines, then extra (--add-host and --link entries, in the caller's
// order), then self last (the sandbox's own IPv4 line, then its IPv6 one
// on a dual-stack network). An entry without a valid address or without
// names writes no line, as Docker writes no self line for a sandbox
// without a network; a name with a space, a control character or '#' is
// left out of its line.
func RenderHosts(extra []Entry, self ...Entry) []byte {
	var b bytes.Buffer
	b.WriteString(hostsHeader)
	for _, e := range extra {
		writeEntry(&b, e)
	}
	for _, e := range self {
		writeEntry(&b, e)
	}
	return b.Bytes()
}

func writeEntry(b *bytes.Buffer, e Entry) {
	ip := e.IP.String()
	if !e.IP.IsValid() || !isHostsField(ip) {
		return
	}
	// A name that is not one field would add names, a comment or lines
	// of its own making: it is left out.
	names := make([]string, 0, len(e.Names))
	for _, n := range e.Names {
		if isHostsField(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return
	}
	b.WriteString(ip)
	b.WriteByte('\t')
	b.WriteString(strings.Join(names, " "))
	b.WriteByte('\n')
}

// isHostsField reports whether s reads back as one field of an /etc/hosts
// line, where '#' starts a comment.
func isHostsField(s string) bool { return isField(s) && !strings.Contains(s, "#") }

// isField reports whether s reads back as one field of a hosts or
// resolv.conf line: not empty, and no space or control character.
func isField(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
}

// AppendHosts is base (the host's /etc/hosts, for a sandbox on the host's
// network, as Docker copies it) with extra's lines after it.
func AppendHosts(base []byte, extra []Entry) []byte {
	var b bytes.Buffer
	b.Write(base)
	if len(base) > 0 && base[len(base)-1] != '\n' {
		b.WriteByte('\n')
	}
	for _, e := range extra {
		writeEntry(&b, e)
	}
	return b.Bytes()
}

// RenderHostname renders /etc/hostname.
func RenderHostname(name string) []byte {
	return []byte(name + "\n")
}
