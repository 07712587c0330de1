package forward

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	loopback4 = netip.MustParseAddr("127.0.0.1")
	loopback6 = netip.MustParseAddr("::1")
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec string
		want []Mapping
	}{
		{"80", []Mapping{{ContainerPort: 80, Proto: TCP}}},
		{"8080:80", []Mapping{{HostPort: 8080, ContainerPort: 80, Proto: TCP}}},
		{"53/udp", []Mapping{{ContainerPort: 53, Proto: UDP}}},
		{"5353:53/udp", []Mapping{{HostPort: 5353, ContainerPort: 53, Proto: UDP}}},
		{"80/TCP", []Mapping{{ContainerPort: 80, Proto: TCP}}},
		{"53/Udp", []Mapping{{ContainerPort: 53, Proto: UDP}}},
		{"127.0.0.1:8080:80", []Mapping{{HostIP: loopback4, HostPort: 8080, ContainerPort: 80, Proto: TCP}}},
		{"127.0.0.1::80", []Mapping{{HostIP: loopback4, ContainerPort: 80, Proto: TCP}}},
		{"0.0.0.0:8080:80", []Mapping{{HostIP: netip.IPv4Unspecified(), HostPort: 8080, ContainerPort: 80, Proto: TCP}}},
		{"[::1]:8080:80", []Mapping{{HostIP: loopback6, HostPort: 8080, ContainerPort: 80, Proto: TCP}}},
		{"[::1]::80/udp", []Mapping{{HostIP: loopback6, ContainerPort: 80, Proto: UDP}}},
		{"[::]:8080:80", []Mapping{{HostIP: netip.IPv6Unspecified(), HostPort: 8080, ContainerPort: 80, Proto: TCP}}},
		{"::1:8080:80", []Mapping{{HostIP: loopback6, HostPort: 8080, ContainerPort: 80, Proto: TCP}}},
		{"[127.0.0.1]:8080:80", []Mapping{{HostIP: loopback4, HostPort: 8080, ContainerPort: 80, Proto: TCP}}},
		{"[fe80::1%eth0]:8080:80", []Mapping{{HostIP: netip.MustParseAddr("fe80::1%eth0"), HostPort: 8080, ContainerPort: 80, Proto: TCP}}},
		{":80", []Mapping{{ContainerPort: 80, Proto: TCP}}},
		{"0:80", []Mapping{{ContainerPort: 80, Proto: TCP}}},
		{"65535:1", []Mapping{{HostPort: 65535, ContainerPort: 1, Proto: TCP}}},
		{"080", []Mapping{{ContainerPort: 80, Proto: TCP}}},
		{"8000-8001:80-81", []Mapping{
			{HostPort: 8000, ContainerPort: 80, Proto: TCP},
			{HostPort: 8001, ContainerPort: 81, Proto: TCP},
		}},
		{"127.0.0.1:8000-8002:9000-9002/udp", []Mapping{
			{HostIP: loopback4, HostPort: 8000, ContainerPort: 9000, Proto: UDP},
			{HostIP: loopback4, HostPort: 8001, ContainerPort: 9001, Proto: UDP},
			{HostIP: loopback4, HostPort: 8002, ContainerPort: 9002, Proto: UDP},
		}},
		{"80-82", []Mapping{
			{ContainerPort: 80, Proto: TCP},
			{ContainerPort: 81, Proto: TCP},
			{ContainerPort: 82, Proto: TCP},
		}},
		{"127.0.0.1::80-81", []Mapping{
			{HostIP: loopback4, ContainerPort: 80, Proto: TCP},
			{HostIP: loopback4, ContainerPort: 81, Proto: TCP},
		}},
		{"80-80", []Mapping{{ContainerPort: 80, Proto: TCP}}},
		{"8000-8000:80", []Mapping{{HostPort: 8000, ContainerPort: 80, Proto: TCP}}},
		// A host range for one container port: any free port of the range.
		{"8000-8010:80", []Mapping{{HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80, Proto: TCP}}},
		{"[::1]:8000-8010:80/udp", []Mapping{{HostIP: loopback6, HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80, Proto: UDP}}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseSpec(tt.spec)
			if err != nil {
				t.Fatalf("ParseSpec(%q) error: %v", tt.spec, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseSpec(%q) =\n%+v\nwant\n%+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestParseSpecErrors(t *testing.T) {
	const want = " (want [HOST_IP:][HOST_PORT[-END]:]PORT[-END][/tcp|udp])"
	tests := []struct {
		spec string
		err  string // the whole message
	}{
		{"", `invalid port spec "": it is empty` + want},
		{"8080:abc", `invalid port spec "8080:abc": container port "abc" is not a number in 1-65535` + want},
		{"abc:80", `invalid port spec "abc:80": host port "abc" is not a number in 1-65535` + want},
		{"80/sctp", `invalid port spec "80/sctp": unknown protocol "sctp"` + want},
		{"80/tcp/udp", `invalid port spec "80/tcp/udp": unknown protocol "tcp/udp"` + want},
		{"80/", `invalid port spec "80/": protocol is empty` + want},
		{"8000-8002:80-81", `invalid port spec "8000-8002:80-81": ranges "8000-8002" and "80-81" differ in length` + want},
		{"8080:80-81", `invalid port spec "8080:80-81": ranges "8080" and "80-81" differ in length` + want},
		{"1.2.3:80:80", `invalid port spec "1.2.3:80:80": host IP "1.2.3" is not an IP address` + want},
		{"localhost:80:80", `invalid port spec "localhost:80:80": host IP "localhost" is not an IP address` + want},
		{"90-80", `invalid port spec "90-80": container port range "90-80" runs backwards (want LOW-HIGH)` + want},
		{"90-80:80-90", `invalid port spec "90-80:80-90": host port range "90-80" runs backwards (want LOW-HIGH)` + want},
		{"1.2.3.4:80:80:80", `invalid port spec "1.2.3.4:80:80:80": too many colons: host IP "1.2.3.4:80" is not an IP address (bracket IPv6 addresses: [::1]:8080:80)` + want},
		{"1:2:3:4", `invalid port spec "1:2:3:4": too many colons: host IP "1:2" is not an IP address (bracket IPv6 addresses: [::1]:8080:80)` + want},
		{"127.0.0.1:80", `invalid port spec "127.0.0.1:80": host port "127.0.0.1" is not a number in 1-65535` + want},
		{"0", `invalid port spec "0": container port "0" is not a number in 1-65535` + want},
		{"8080:0", `invalid port spec "8080:0": container port "0" is not a number in 1-65535` + want},
		{"65536", `invalid port spec "65536": container port "65536" is not a number in 1-65535` + want},
		{"70000:80", `invalid port spec "70000:80": host port "70000" is not a number in 1-65535` + want},
		{"-1", `invalid port spec "-1": container port range "-1": "" is not a number in 1-65535` + want},
		{"80-", `invalid port spec "80-": container port range "80-": "" is not a number in 1-65535` + want},
		{"0-5:80-85", `invalid port spec "0-5:80-85": host port range "0-5": "0" is not a number in 1-65535` + want},
		{" 80", `invalid port spec " 80": container port " 80" is not a number in 1-65535` + want},
		{"+80", `invalid port spec "+80": container port "+80" is not a number in 1-65535` + want},
		{"8080:", `invalid port spec "8080:": container port is missing` + want},
		{":", `invalid port spec ":": container port is missing` + want},
		{"/udp", `invalid port spec "/udp": container port is missing` + want},
		{"[::1]:80", `invalid port spec "[::1]:80": want HOST_PORT:PORT after [::1]:, got "80"` + want},
		{"[::1]:80:80:80", `invalid port spec "[::1]:80:80:80": want HOST_PORT:PORT after [::1]:, got "80:80:80"` + want},
		{"[::1:8080:80", `invalid port spec "[::1:8080:80": host IP "[::1:8080:80" lacks its closing ']'` + want},
		{"[::1]8080:80", `invalid port spec "[::1]8080:80": host IP [::1] must be followed by ':'` + want},
		{"[::zz]:8080:80", `invalid port spec "[::zz]:8080:80": host IP "::zz" is not an IP address` + want},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseSpec(tt.spec)
			if err == nil {
				t.Fatalf("ParseSpec(%q) = %+v, want error %q", tt.spec, got, tt.err)
			}
			if err.Error() != tt.err {
				t.Errorf("ParseSpec(%q) error\n got %s\nwant %s", tt.spec, err, tt.err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestMappingString(t *testing.T) {
	tests := []struct {
		m    Mapping
		want string
	}{
		{Mapping{HostPort: 8080, ContainerPort: 80, Proto: TCP}, "0.0.0.0:8080->80/tcp"},
		{Mapping{HostIP: loopback4, HostPort: 8080, ContainerPort: 80, Proto: TCP}, "127.0.0.1:8080->80/tcp"},
		{Mapping{HostIP: loopback6, HostPort: 8080, ContainerPort: 80, Proto: TCP}, "[::1]:8080->80/tcp"},
		{Mapping{HostIP: netip.IPv6Unspecified(), HostPort: 53, ContainerPort: 53, Proto: UDP}, "[::]:53->53/udp"},
		{Mapping{HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80, Proto: TCP}, "0.0.0.0:8000-8010->80/tcp"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.m, got, tt.want)
		}
	}
}

// TestFormatPortsMatchesDocker checks FormatPorts against the PORTS column
// that docker ps (CLI 28.2.2, Engine 20.10.24) printed for the same -p flags.
func TestFormatPortsMatchesDocker(t *testing.T) {
	tests := []struct {
		name  string
		specs []string
		bound map[uint16]uint16 // container port -> host port Docker picked
		want  string
	}{
		{
			name:  "one port",
			specs: []string{"18080:80"},
			want:  "0.0.0.0:18080->80/tcp, [::]:18080->80/tcp",
		},
		{
			name:  "range to other ports is not collapsed",
			specs: []string{"18000-18001:80-81"},
			want:  "0.0.0.0:18000->80/tcp, [::]:18000->80/tcp, 0.0.0.0:18001->81/tcp, [::]:18001->81/tcp",
		},
		{
			name:  "range to the same ports collapses",
			specs: []string{"18120-18121:18120-18121"},
			want:  "0.0.0.0:18120-18121->18120-18121/tcp, [::]:18120-18121->18120-18121/tcp",
		},
		{
			name:  "bare IPv6",
			specs: []string{"::1:18091:80"},
			want:  "[::1]:18091->80/tcp",
		},
		{
			name:  "udp, loopback and a picked port",
			specs: []string{"18000-18001:80-81", "127.0.0.1:18053:53/udp", "127.0.0.1::90"},
			bound: map[uint16]uint16{90: 32768},
			want: "127.0.0.1:18053->53/udp, 0.0.0.0:18000->80/tcp, [::]:18000->80/tcp, " +
				"0.0.0.0:18001->81/tcp, [::]:18001->81/tcp, 127.0.0.1:32768->90/tcp",
		},
		{
			name:  "IPv6 loopback and a host range",
			specs: []string{"[::1]:18090:80", "18100-18102:100"},
			bound: map[uint16]uint16{100: 18100},
			want:  "[::1]:18090->80/tcp, 0.0.0.0:18100->100/tcp, [::]:18100->100/tcp",
		},
		{
			name: "groups, a broken run and singles",
			specs: []string{"18120-18121:18120-18121", "18130:80", "127.0.0.1:18122:18122",
				"18123:18123/udp", "[::1]:18124:18124", "18125:18125"},
			want: "0.0.0.0:18120-18121->18120-18121/tcp, [::]:18120-18121->18120-18121/tcp, " +
				"0.0.0.0:18125->18125/tcp, [::]:18125->18125/tcp, 127.0.0.1:18122->18122/tcp, " +
				"0.0.0.0:18123->18123/udp, [::]:18123->18123/udp, [::1]:18124->18124/tcp, " +
				"0.0.0.0:18130->80/tcp, [::]:18130->80/tcp",
		},
		{
			name: "none",
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ms []Mapping
			for _, spec := range tt.specs {
				parsed, err := ParseSpec(spec)
				if err != nil {
					t.Fatal(err)
				}
				ms = append(ms, parsed...)
			}
			for i, m := range ms {
				if hostPort, ok := tt.bound[m.ContainerPort]; ok {
					ms[i].HostPort, ms[i].HostPortEnd = hostPort, 0
				}
			}
			if got := FormatPorts(ms); got != tt.want {
				t.Errorf("FormatPorts() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestBindings: docker port's lines for -p 8080:80 -p 127.0.0.1:9090:90/udp
// (checked against a Docker engine): every address is 0.0.0.0 then ::.
func TestBindings(t *testing.T) {
	ms := []Mapping{
		{HostPort: 8080, ContainerPort: 80, Proto: TCP},
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 9090, ContainerPort: 90, Proto: UDP},
	}
	var got []string
	for _, b := range Bindings(ms) {
		got = append(got, fmt.Sprintf("%s %d->%d/%s", b.HostIP, b.HostPort, b.ContainerPort, b.Proto))
	}
	want := []string{"0.0.0.0 8080->80/tcp", ":: 8080->80/tcp", "127.0.0.1 9090->90/udp"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Bindings = %q; want %q", got, want)
	}
}
