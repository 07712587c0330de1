package hosts

import (
	"net/netip"
	"slices"
	"testing"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestRenderResolvConf(t *testing.T) {
	tests := []struct {
		name        string
		nameservers []netip.Addr
		search      []string
		options     []string
		want        string
	}{
		{
			// docker run --dns 1.1.1.1 --dns 2001:db8::1 --dns-search a.com
			// --dns-search b.com --dns-option ndots:2 --dns-option rotate,
			// in current Docker's order.
			name:        "all parts",
			nameservers: addrs("1.1.1.1", "2001:db8::1"),
			search:      []string{"a.com", "b.com"},
			options:     []string{"ndots:2", "rotate"},
			want: "nameserver 1.1.1.1\n" +
				"nameserver 2001:db8::1\n" +
				"search a.com b.com\n" +
				"options ndots:2 rotate\n",
		},
		{
			name:        "nameserver only",
			nameservers: addrs("10.0.2.3"),
			want:        "nameserver 10.0.2.3\n",
		},
		{
			name: "empty",
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(RenderResolvConf(tt.nameservers, tt.search, tt.options)); got != tt.want {
				t.Errorf("RenderResolvConf() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name        string
		data        string
		nameservers []netip.Addr
		search      []string
		options     []string
	}{
		{
			name: "systemd-resolved stub",
			data: "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\n" +
				"nameserver 127.0.0.53\n" +
				"options edns0 trust-ad\n" +
				"search lan\n",
			nameservers: addrs("127.0.0.53"),
			search:      []string{"lan"},
			options:     []string{"edns0", "trust-ad"},
		},
		{
			name: "comments, blanks and junk",
			data: "; old-style comment\n" +
				"   # indented comment\n" +
				"\n" +
				"nameserver not-an-ip\n" +
				"nameserver\n" +
				"sortlist 130.155.160.0/255.255.240.0\n" +
				"nameserver\t8.8.8.8  \n",
			nameservers: addrs("8.8.8.8"),
		},
		{
			name:        "last search wins, domain counts as search",
			data:        "search a.example b.example\ndomain c.example\nsearch d.example\n",
			search:      []string{"d.example"},
			nameservers: nil,
		},
		{
			name:   "domain after search wins",
			data:   "search a.example\ndomain c.example\n",
			search: []string{"c.example"},
		},
		{
			name:    "options add up",
			data:    "options ndots:1\noptions rotate timeout:2\n",
			options: []string{"ndots:1", "rotate", "timeout:2"},
		},
		{
			name:        "IPv6 keeps its zone",
			data:        "nameserver fe80::1%eth0\nnameserver 2001:db8::53\n",
			nameservers: addrs("fe80::1%eth0", "2001:db8::53"),
		},
		{
			name:        "no trailing newline",
			data:        "nameserver 10.0.2.3",
			nameservers: addrs("10.0.2.3"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, search, options := ParseResolvConf([]byte(tt.data))
			if !slices.Equal(ns, tt.nameservers) {
				t.Errorf("nameservers = %v, want %v", ns, tt.nameservers)
			}
			if !slices.Equal(search, tt.search) {
				t.Errorf("search = %q, want %q", search, tt.search)
			}
			if !slices.Equal(options, tt.options) {
				t.Errorf("options = %q, want %q", options, tt.options)
			}
		})
	}
}

func TestResolvConfRoundTrip(t *testing.T) {
	ns, search, options := addrs("10.0.2.3", "fd00::3"), []string{"corp.example"}, []string{"ndots:0"}
	gotNS, gotSearch, gotOptions := ParseResolvConf(RenderResolvConf(ns, search, options))
	if !slices.Equal(gotNS, ns) || !slices.Equal(gotSearch, search) || !slices.Equal(gotOptions, options) {
		t.Errorf("round trip = %v %q %q", gotNS, gotSearch, gotOptions)
	}
}
