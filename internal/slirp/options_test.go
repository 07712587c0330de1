package slirp

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// The command lines rootless Podman 4.3.1 and RootlessKit 1.x-3.x were
// seen to pass.
func TestParseClientCommandLines(t *testing.T) {
	cases := []struct {
		name string
		argv string
		want func(o Options) bool
	}{
		{"podman default", "--disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp --enable-ipv6 -c -e 3 -r 4 --netns-type=path /run/user/1001/netns/netns-0c6a tap0",
			func(o Options) bool {
				return o.DisableHostLoopback && o.MTU == 65520 && o.EnableSandbox && o.EnableSeccomp && o.IPv6 && o.Configure &&
					o.ExitFD == 3 && o.ReadyFD == 4 && o.NetnsType == "path" && o.Target == "/run/user/1001/netns/netns-0c6a" && o.TAP == "tap0"
			}},
		{"podman with the API socket", "--disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp --enable-ipv6 -c -e 3 -r 4 --api-socket /run/user/1001/libpod/tmp/abc.net --netns-type=path /run/user/1001/netns/x tap0",
			func(o Options) bool { return o.APISocket == "/run/user/1001/libpod/tmp/abc.net" && o.ReadyFD == 4 }},
		{"podman options", "--mtu=1500 --enable-sandbox --enable-seccomp --cidr=10.41.0.0/24 --outbound-addr=127.0.0.1 -c -e 3 -r 4 --netns-type=path /x tap0",
			func(o Options) bool {
				return o.MTU == 1500 && o.CIDR == netip.MustParsePrefix("10.41.0.0/24") && o.OutboundAddr == "127.0.0.1" && !o.IPv6 && !o.DisableHostLoopback
			}},
		{"podman outbound_addr6 empty", "--outbound-addr6= -c -r 4 --netns-type=path /x tap0", func(o Options) bool { return o.OutboundAddr6 == "" }},
		{"podman PostConfigureNetNS", "-c -e 3 -r 4 4242 tap0", func(o Options) bool { return o.NetnsType == "pid" && o.Target == "4242" }},
		{"podman rootless-netns", "--disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp --enable-ipv6 -c -r 3 --netns-type=path /run/user/1001/netns/rootless-netns-ab tap0",
			func(o Options) bool { return o.ExitFD == -1 && o.ReadyFD == 3 }},
		{"rootlesskit slirp4netns port driver", "--mtu 65520 -r 3 --disable-host-loopback --api-socket /tmp/x/.s4nn.sock 25940 tap0",
			func(o Options) bool {
				return o.MTU == 65520 && o.Target == "25940" && o.APISocket == "/tmp/x/.s4nn.sock" && !o.Configure
			}},
		{"rootlesskit builtin port driver", "--mtu 65520 -r 3 --disable-host-loopback 26125 tap0", func(o Options) bool { return o.ReadyFD == 3 }},
		{"rootlesskit options", "--mtu 1500 -r 3 --disable-host-loopback --cidr 10.0.3.0/24 --api-socket /s --enable-sandbox --enable-seccomp --enable-ipv6 16892 tap0",
			func(o Options) bool {
				return o.CIDR == netip.MustParsePrefix("10.0.3.0/24") && o.Gateway() == netip.MustParseAddr("10.0.3.2") &&
					o.Resolver() == netip.MustParseAddr("10.0.3.3") && o.Guest() == netip.MustParseAddr("10.0.3.100")
			}},
		{"rootlesskit detach-netns", "--mtu 65520 -r 3 --userns-path=/proc/77/ns/user --netns-type=path /proc/77/root/state/netns tap0",
			func(o Options) bool {
				return o.UsernsPath == "/proc/77/ns/user" && o.Target == "/proc/77/root/state/netns"
			}},
		{"short forms", "-c6 -m9000 -a/s -r3 -e 4 1 tap1", func(o Options) bool {
			return o.Configure && o.IPv6 && o.MTU == 9000 && o.APISocket == "/s" && o.ReadyFD == 3 && o.ExitFD == 4 && o.TAP == "tap1"
		}},
		{"operands first, TAPNAME defaulted", "1 --mtu=9000", func(o Options) bool { return o.Target == "1" && o.TAP == "tap0" && o.MTU == 9000 }},
		{"macaddress with -c", "-c --macaddress=02:00:00:00:00:01 1 tap0", func(o Options) bool { return o.MAC.String() == (net.HardwareAddr{2, 0, 0, 0, 0, 1}).String() }},
		{"abbreviated long options", "--config --disable-h --api=/s --ready 3 1 tap0", func(o Options) bool {
			return o.Configure && o.DisableHostLoopback && o.APISocket == "/s" && o.ReadyFD == 3
		}},
		{"help alone", "--help", func(o Options) bool { return o.Help }},
		{"version alone", "-v", func(o Options) bool { return o.Version }},
	}
	for _, c := range cases {
		o, err := Parse(strings.Fields(c.argv))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !c.want(o) {
			t.Errorf("%s: parsed %+v", c.name, o)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for argv, want := range map[string]string{
		"--bogus 1 tap0":                           "unrecognized option '--bogus'",
		"-x 1 tap0":                                "invalid option -- 'x'",
		"--mtu 1 tap0":                             "--mtu", // --mtu takes "1", which is no MTU
		"--mtu=70000 1 tap0":                       "--mtu",
		"--mtu=abc 1 tap0":                         "--mtu",
		"-r x 1 tap0":                              "--ready-fd",
		"--cidr=10.0.2.0/28 1 tap0":                "--cidr",
		"--cidr=fd00::/64 1 tap0":                  "--cidr",
		"--netns-type=file 1 tap0":                 "--netns-type",
		"--target-type=bess 1 tap0":                "only netns",
		"--macaddress=02:00:00:00:00:01 1 tap0":    "only valid with -c",
		"--macaddress=01:00:00:00:00:01 -c 1 tap0": "unicast",
		"-c --configure=yes 1 tap0":                "doesn't allow an argument",
		"notapid tap0":                             "not a PID",
		"":                                         "want PID|PATH",
		"1 tap0 extra":                             "want PID|PATH",
		"1 averyveryverylongname":                  "not an interface name",
		"-r":                                       "requires an argument",
	} {
		_, err := Parse(strings.Fields(argv))
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v; want a usage error saying %q", argv, err, want)
		}
	}
}

// Every flag slirp4netns 1.2.0 documents is in the help text, which
// clients search for the flags they may pass.
func TestHelpListsEveryFlag(t *testing.T) {
	for _, o := range options(&Options{}) {
		if !strings.Contains(Help, "--"+o.long) {
			t.Errorf("--help lacks --%s", o.long)
		}
		if o.short != 0 && !strings.Contains(Help, "-"+string(o.short)+", --"+o.long) {
			t.Errorf("--help lacks -%c for --%s", o.short, o.long)
		}
	}
}
