package hosts

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseAddHost(t *testing.T) {
	tests := []struct {
		in          string
		name        string
		ip          string // "" for an invalid address
		hostGateway bool
		wantErr     string // substring; "" for success
	}{
		{in: "foo:1.2.3.4", name: "foo", ip: "1.2.3.4"},
		{in: "bar=5.6.7.8", name: "bar", ip: "5.6.7.8"},
		{in: "v6:::1", name: "v6", ip: "::1"},
		{in: "v6b:[::2]", name: "v6b", ip: "::2"},
		{in: "v6c=[2001:db8::1]", name: "v6c", ip: "2001:db8::1"},
		{in: "v4b:[10.0.0.1]", name: "v4b", ip: "10.0.0.1"},
		{in: "db.internal:10.1.2.3", name: "db.internal", ip: "10.1.2.3"},
		{in: "gw:host-gateway", name: "gw", hostGateway: true},
		{in: "gw=host-gateway", name: "gw", hostGateway: true},
		{in: "foo", wantErr: `invalid --add-host "foo": want NAME:IP or NAME:host-gateway`},
		{in: "", wantErr: `invalid --add-host "": want NAME:IP or NAME:host-gateway`},
		{in: ":1.2.3.4", wantErr: `invalid --add-host ":1.2.3.4": want NAME:IP`},
		{in: "foo:", wantErr: `invalid --add-host "foo:": want NAME:IP`},
		{in: "foo:1.2.3", wantErr: `invalid --add-host "foo:1.2.3": "1.2.3" is not an IP address (want NAME:IP or NAME:host-gateway)`},
		{in: "foo:[::1", wantErr: `"[::1" is not an IP address`},
		{in: "foo:fe80::1%eth0", wantErr: `cannot hold the zone of "fe80::1%eth0"`},
		{in: "foo_bar:1.2.3.4", wantErr: `invalid --add-host "foo_bar:1.2.3.4": hostname "foo_bar" contains '_'`},
		{in: "-foo:1.2.3.4", wantErr: `label "-foo" that starts or ends with '-'`},
		{in: "a:b=1.2.3.4", wantErr: `hostname "a:b" contains ':'`},
		{in: "foo:Host-Gateway", wantErr: `"Host-Gateway" is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			name, ip, hostGateway, err := ParseAddHost(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAddHost(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddHost(%q) error = %v", tt.in, err)
			}
			var wantIP netip.Addr
			if tt.ip != "" {
				wantIP = netip.MustParseAddr(tt.ip)
			}
			if name != tt.name || ip != wantIP || hostGateway != tt.hostGateway {
				t.Errorf("ParseAddHost(%q) = %q, %v, %v; want %q, %v, %v", tt.in, name, ip, hostGateway, tt.name, wantIP, tt.hostGateway)
			}
		})
	}
}

func TestValidHostname(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	long := strings.Repeat(label63+".", 4)[:254]
	tests := []struct {
		in      string
		wantErr string // substring; "" for valid
	}{
		{in: "localhost"},
		{in: "eb948ffc9ff8"},
		{in: "web-nasa"},
		{in: "a.b.example"},
		{in: "A1"},
		{in: "1.2.3"}, // all-digit labels are allowed by RFC 1123
		{in: label63},
		{in: long[:253]},
		{in: "", wantErr: "hostname is empty"},
		{in: long, wantErr: "254 characters long, the limit is 253"},
		{in: label63 + "a", wantErr: "of 64 characters, the limit is 63"},
		{in: "a..b", wantErr: "empty label"},
		{in: "a.", wantErr: "empty label"},
		{in: ".a", wantErr: "empty label"},
		{in: "-a", wantErr: "starts or ends with '-'"},
		{in: "a-", wantErr: "starts or ends with '-'"},
		{in: "my_host", wantErr: `contains '_'`},
		{in: "héllo", wantErr: `contains 'é'`},
		{in: "a b", wantErr: `contains ' '`},
		{in: "10.0.0.1", wantErr: "is an IP address"},
		{in: "::1", wantErr: "is an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := ValidHostname(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("ValidHostname(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidHostname(%q) = %v, want it to contain %q", tt.in, err, tt.wantErr)
			}
		})
	}
}
