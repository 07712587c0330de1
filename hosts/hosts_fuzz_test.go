package hosts

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// FuzzNameInputs feeds one string to everything that takes a name into
// the sandbox's name files: --add-host parsing, /etc/hosts and resolv.conf
// rendering (a name must never add a line or a field), and resolv.conf
// parsing, whose result must read back the same once rendered.
func FuzzNameInputs(f *testing.F) {
	for _, s := range []string{
		"db:10.0.0.5", "db=10.0.0.5", "v6:::1", "v6:[2001:db8::1]", "gw:host-gateway", "a.b-c:1.2.3.4",
		"x:fe80::1%eth0", ":1.2.3.4", "db:", "-a:1.2.3.4", "a..b:1.2.3.4",
		"evil\n6.6.6.6 bank.example", "name\twith tab", "name#comment", "nameserver 203.0.113.1",
		"nameserver 198.51.100.1\nsearch example.com\noptions ndots:2 edns0\n# comment\n; another\ndomain local\n",
		"nameserver fe80::1%eth0\nnameserver not-an-ip\nsearch\noptions\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkAddHost(t, s)
		checkHostsRendering(t, s)
		checkResolvConf(t, s)
	})
}

func checkAddHost(t *testing.T, s string) {
	name, ip, gateway, err := ParseAddHost(s)
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Fatalf("ParseAddHost(%q): error of more than one line: %q", s, err)
		}
		return
	}
	if verr := ValidHostname(name); verr != nil || !isHostsField(name) {
		t.Fatalf("ParseAddHost(%q) took name %q: %v", s, name, verr)
	}
	if gateway == ip.IsValid() || ip.Zone() != "" {
		t.Fatalf("ParseAddHost(%q) = ip %v, host-gateway %v", s, ip, gateway)
	}
}

// checkHostsRendering writes s as a name among good ones and as a
// search domain and option: every line must be one the renderer meant.
func checkHostsRendering(t *testing.T, s string) {
	ip := netip.MustParseAddr("198.51.100.7")
	entries := []Entry{{IP: ip, Names: []string{"good", s}}, {IP: ip, Names: []string{s}}}
	out := RenderHosts(entries, Entry{IP: netip.MustParseAddr("2001:db8::7"), Names: []string{s, "self"}})
	body, ok := bytes.CutPrefix(out, []byte(hostsHeader))
	if !ok {
		t.Fatalf("RenderHosts lost its header: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	wantLines := 2 // "good" and "self" are always written
	if isHostsField(s) {
		wantLines = 3
	}
	if len(lines) != wantLines {
		t.Fatalf("RenderHosts with name %q wrote %d lines, want %d:\n%s", s, len(lines), wantLines, body)
	}
	for _, l := range lines {
		fs := strings.Fields(l)
		if len(fs) < 2 || (fs[0] != "198.51.100.7" && fs[0] != "2001:db8::7") || strings.Contains(l, "#") {
			t.Fatalf("RenderHosts with name %q wrote line %q", s, l)
		}
		for _, n := range fs[1:] {
			if n != s && n != "good" && n != "self" {
				t.Fatalf("RenderHosts with name %q wrote name %q", s, n)
			}
		}
	}

	conf := RenderResolvConf([]netip.Addr{netip.MustParseAddr("203.0.113.53")}, []string{"example.com", s}, []string{s})
	ns, search, opts := ParseResolvConf(conf)
	wantSearch, wantOpts := []string{"example.com"}, []string(nil)
	if isField(s) {
		wantSearch, wantOpts = append(wantSearch, s), []string{s}
	}
	if len(ns) != 1 || !slices.Equal(search, wantSearch) || !slices.Equal(opts, wantOpts) || bytes.Count(conf, []byte("\n")) != 2+len(wantOpts) {
		t.Fatalf("RenderResolvConf with %q wrote %q, read back as %v %q %q", s, conf, ns, search, opts)
	}
}

// checkResolvConf reads s as a host's resolv.conf: what a sandbox
// inherits must survive being written for it, but for values with a
// control character, which are not written.
func checkResolvConf(t *testing.T, s string) {
	ns, search, opts := ParseResolvConf([]byte(s))
	ns2, search2, opts2 := ParseResolvConf(RenderResolvConf(ns, search, opts))
	ns = slices.DeleteFunc(ns, func(a netip.Addr) bool { return !isField(a.String()) })
	search, opts = fields(search), fields(opts)
	if !slices.Equal(ns, ns2) || !slices.Equal(search, search2) || !slices.Equal(opts, opts2) {
		t.Fatalf("resolv.conf %q reads as %v %q %q, rendered and read again as %v %q %q", s, ns, search, opts, ns2, search2, opts2)
	}
}
