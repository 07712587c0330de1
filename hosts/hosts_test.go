package hosts

import (
	"net/netip"
	"testing"
)

// dockerLinkedHosts is /etc/hosts as Docker Engine 20.10.24 wrote it for
//
//	docker run --link nrt-web --link nrt-web:alias1 --add-host foo:1.2.3.4 \
//	    --add-host bar=5.6.7.8 --add-host v6:::1 --add-host v6b:[::2] \
//	    --add-host gw:host-gateway --add-host foo:9.9.9.9 -h myhost ...
//
// (--add-host entries in flag order, then links, then self; TABs after the address).
const dockerLinkedHosts = "127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::0\tip6-localnet\n" +
	"ff00::0\tip6-mcastprefix\n" +
	"ff02::1\tip6-allnodes\n" +
	"ff02::2\tip6-allrouters\n" +
	"1.2.3.4\tfoo\n" +
	"5.6.7.8\tbar\n" +
	"::1\tv6\n" +
	"::2\tv6b\n" +
	"172.17.0.1\tgw\n" +
	"9.9.9.9\tfoo\n" +
	"172.17.0.2\tnrt-web 452a8bfeaddd\n" +
	"172.17.0.2\talias1 452a8bfeaddd nrt-web\n" +
	"172.17.0.3\tmyhost\n"

func entry(ip string, names ...string) Entry {
	return Entry{IP: netip.MustParseAddr(ip), Names: names}
}

func TestRenderHostsMatchesDocker(t *testing.T) {
	tests := []struct {
		name  string
		self  []Entry
		extra []Entry
		want  string
	}{
		{
			name: "links and add-host",
			self: []Entry{entry("172.17.0.3", "myhost")},
			extra: []Entry{
				entry("1.2.3.4", "foo"),
				entry("5.6.7.8", "bar"),
				entry("::1", "v6"),
				entry("::2", "v6b"),
				entry("172.17.0.1", "gw"),
				entry("9.9.9.9", "foo"),
				entry("172.17.0.2", "nrt-web", "452a8bfeaddd"),
				entry("172.17.0.2", "alias1", "452a8bfeaddd", "nrt-web"),
			},
			want: dockerLinkedHosts,
		},
		{
			// docker run --rm IMAGE cat /etc/hosts
			name: "self only",
			self: []Entry{entry("172.17.0.2", "eca48ae02924")},
			want: hostsHeaderForTest + "172.17.0.2\teca48ae02924\n",
		},
		{
			// docker network create --ipv6 --subnet 2001:db8:77::/64 v6net
			// docker run --rm --network v6net IMAGE cat /etc/hosts
			name: "dual stack",
			self: []Entry{entry("172.18.0.2", "e733c11ddb86"), entry("2001:db8:77::2", "e733c11ddb86")},
			want: hostsHeaderForTest + "172.18.0.2\te733c11ddb86\n2001:db8:77::2\te733c11ddb86\n",
		},
		{
			// docker run -h a.b.example: the caller passes the short name too.
			name: "dotted hostname",
			self: []Entry{entry("172.17.0.3", "a.b.example", "a")},
			want: hostsHeaderForTest + "172.17.0.3\ta.b.example a\n",
		},
		{
			// docker run --network none -h hh: no address, no self line.
			name: "no network",
			self: []Entry{{Names: []string{"hh"}}},
			want: hostsHeaderForTest,
		},
		{
			name:  "entry without names writes nothing",
			self:  []Entry{entry("10.0.2.100", "box")},
			extra: []Entry{{IP: netip.MustParseAddr("10.0.2.5")}},
			want:  hostsHeaderForTest + "10.0.2.100\tbox\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(RenderHosts(tt.extra, tt.self...)); got != tt.want {
				t.Errorf("RenderHosts() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// hostsHeaderForTest is spelled out again, rather than reusing hostsHeader,
// so that a change to the header fails the test.
const hostsHeaderForTest = "127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::0\tip6-localnet\n" +
	"ff00::0\tip6-mcastprefix\n" +
	"ff02::1\tip6-allnodes\n" +
	"ff02::2\tip6-allrouters\n"

func TestRenderHostname(t *testing.T) {
	if got := string(RenderHostname("eb948ffc9ff8")); got != "eb948ffc9ff8\n" {
		t.Errorf("RenderHostname() = %q", got)
	}
}
