// Package slirp is netns-run's slirp4netns mode: the same command line,
// readiness and API as slirp4netns 1.2.0, so that rootless Podman and
// RootlessKit (rootless Docker) run on netns-run's stack by pointing them at
// this binary (`network_cmd_path`, `--slirp4netns-binary`, or a
// `slirp4netns` first on PATH). The process joins the target network
// namespace on one OS thread to open its TAP, then serves the TAP with the
// same gVisor gateway, DNS forwarder and published-port forwarder as
// `netns-run --network private`. See docs/SLIRP4NETNS.md.
package slirp

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Options are a slirp4netns command line.
type Options struct {
	Configure           bool // -c: configure lo and the TAP in the namespace
	ExitFD              int  // -e: exit when it reports EOF; -1 none
	ReadyFD             int  // -r: write "1" once ready; -1 none
	MTU                 int
	IPv6                bool
	APISocket           string
	CIDR                netip.Prefix
	DisableHostLoopback bool
	NetnsType           string // "pid" or "path"
	UsernsPath          string
	EnableSandbox       bool
	EnableSeccomp       bool
	OutboundAddr        string
	OutboundAddr6       string
	DisableDNS          bool
	MAC                 net.HardwareAddr
	TargetType          string
	Help, Version       bool
	// Target is the PID or namespace path; TAP the interface name.
	Target string
	TAP    string
}

// The defaults of slirp4netns 1.2.0.
var defaultCIDR = netip.MustParsePrefix("10.0.2.0/24")

const (
	defaultMTU = 1500
	maxMTU     = 65521
)

// UsageError is a command line that cannot be run; slirp4netns exits 1.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

func usagef(format string, a ...any) error {
	return &UsageError{fmt.Sprintf(format, a...) + " (see --help)"}
}

// option is one flag of the command line.
type option struct {
	long  string
	short byte // 0: none
	arg   bool
	set   func(o *Options, v string) error
}

func fdValue(name string, dst *int) func(*Options, string) error {
	return func(_ *Options, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return usagef("%s: %q is not a file descriptor", name, v)
		}
		*dst = n
		return nil
	}
}

func flagValue(dst func(*Options) *bool) func(*Options, string) error {
	return func(o *Options, _ string) error { *dst(o) = true; return nil }
}

func options(o *Options) []option {
	return []option{
		{"configure", 'c', false, flagValue(func(o *Options) *bool { return &o.Configure })},
		{"exit-fd", 'e', true, fdValue("--exit-fd", &o.ExitFD)},
		{"ready-fd", 'r', true, fdValue("--ready-fd", &o.ReadyFD)},
		{"mtu", 'm', true, func(o *Options, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 68 || n > maxMTU {
				return usagef("--mtu: %q is not an MTU from 68 to %d", v, maxMTU)
			}
			o.MTU = n
			return nil
		}},
		{"enable-ipv6", '6', false, flagValue(func(o *Options) *bool { return &o.IPv6 })},
		{"api-socket", 'a', true, func(o *Options, v string) error {
			if v == "" {
				return usagef("--api-socket: empty path")
			}
			o.APISocket = v
			return nil
		}},
		{"cidr", 0, true, func(o *Options, v string) error {
			p, err := netip.ParsePrefix(v)
			if err != nil || !p.Addr().Is4() || p.Bits() > 25 {
				return usagef("--cidr: %q is not an IPv4 network of /25 or wider (e.g. 10.0.2.0/24)", v)
			}
			o.CIDR = p.Masked()
			return nil
		}},
		{"disable-host-loopback", 0, false, flagValue(func(o *Options) *bool { return &o.DisableHostLoopback })},
		{"netns-type", 0, true, func(o *Options, v string) error {
			if v != "pid" && v != "path" {
				return usagef("--netns-type: %q is neither pid nor path", v)
			}
			o.NetnsType = v
			return nil
		}},
		{"userns-path", 0, true, func(o *Options, v string) error { o.UsernsPath = v; return nil }},
		{"enable-sandbox", 0, false, flagValue(func(o *Options) *bool { return &o.EnableSandbox })},
		{"enable-seccomp", 0, false, flagValue(func(o *Options) *bool { return &o.EnableSeccomp })},
		{"outbound-addr", 0, true, func(o *Options, v string) error { o.OutboundAddr = v; return nil }},
		{"outbound-addr6", 0, true, func(o *Options, v string) error { o.OutboundAddr6 = v; return nil }},
		{"disable-dns", 0, false, flagValue(func(o *Options) *bool { return &o.DisableDNS })},
		{"macaddress", 0, true, func(o *Options, v string) error {
			mac, err := net.ParseMAC(v)
			if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
				return usagef("--macaddress: %q is not a unicast Ethernet address", v)
			}
			o.MAC = mac
			return nil
		}},
		{"target-type", 0, true, func(o *Options, v string) error {
			if v != "netns" && v != "bess" {
				return usagef("--target-type: %q is neither netns nor bess", v)
			}
			o.TargetType = v
			return nil
		}},
		{"help", 'h', false, flagValue(func(o *Options) *bool { return &o.Help })},
		{"version", 'v', false, flagValue(func(o *Options) *bool { return &o.Version })},
	}
}

// Parse reads a slirp4netns command line (without the program name) as
// getopt_long does: --x=v and --x v (or an unambiguous prefix of x), -x v
// and -xv, short flags grouped (-c6), options and operands in any order,
// "--" ending the options.
func Parse(args []string) (Options, error) {
	o := Options{ExitFD: -1, ReadyFD: -1, MTU: defaultMTU, CIDR: defaultCIDR, NetnsType: "pid", TargetType: "netns"}
	opts := options(&o)
	byLong := map[string]*option{}
	byShort := map[byte]*option{}
	for i := range opts {
		byLong[opts[i].long] = &opts[i]
		if opts[i].short != 0 {
			byShort[opts[i].short] = &opts[i]
		}
	}
	var operands []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			operands = append(operands, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			opt, err := lookupLong(opts, byLong, name)
			if err != nil {
				return o, err
			}
			name = opt.long
			if opt.arg && !hasVal {
				if i+1 >= len(args) {
					return o, usagef("option '--%s' requires an argument", name)
				}
				i++
				val = args[i]
			} else if !opt.arg && hasVal {
				return o, usagef("option '--%s' doesn't allow an argument", name)
			}
			if err := opt.set(&o, val); err != nil {
				return o, err
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for j := 1; j < len(a); j++ {
				opt := byShort[a[j]]
				if opt == nil {
					return o, usagef("invalid option -- '%c'", a[j])
				}
				if !opt.arg {
					if err := opt.set(&o, ""); err != nil {
						return o, err
					}
					continue
				}
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return o, usagef("option requires an argument -- '%c'", a[j])
					}
					i++
					val = args[i]
				}
				if err := opt.set(&o, val); err != nil {
					return o, err
				}
				break
			}
		default:
			operands = append(operands, a)
		}
	}
	if o.Help || o.Version {
		return o, nil
	}
	switch len(operands) {
	case 2:
		o.Target, o.TAP = operands[0], operands[1]
	case 1:
		o.Target, o.TAP = operands[0], "tap0"
	default:
		return o, usagef("want PID|PATH [TAPNAME], got %d operands", len(operands))
	}
	if o.NetnsType == "pid" {
		if n, err := strconv.Atoi(o.Target); err != nil || n <= 0 {
			return o, usagef("%q is not a PID (with --netns-type=path, give a namespace path)", o.Target)
		}
	}
	if o.TargetType != "netns" {
		return o, usagef("--target-type=%s is not supported: only netns", o.TargetType)
	}
	if o.MAC != nil && !o.Configure {
		return o, usagef("--macaddress is only valid with -c")
	}
	if len(o.TAP) == 0 || len(o.TAP) > 15 {
		return o, usagef("TAPNAME %q is not an interface name", o.TAP)
	}
	return o, nil
}

// lookupLong finds a long option by its name or, as getopt_long does, by an
// unambiguous prefix of it.
func lookupLong(opts []option, byLong map[string]*option, name string) (*option, error) {
	if opt := byLong[name]; opt != nil {
		return opt, nil
	}
	var found *option
	for i := range opts {
		if name != "" && strings.HasPrefix(opts[i].long, name) {
			if found != nil {
				return nil, usagef("option '--%s' is ambiguous (--%s, --%s, ...)", name, found.long, opts[i].long)
			}
			found = &opts[i]
		}
	}
	if found == nil {
		return nil, usagef("unrecognized option '--%s'", name)
	}
	return found, nil
}

// Addresses of the layout, as slirp4netns's: the gateway at .2, the DNS
// forwarder at .3 and the guest at .100 of the CIDR.
func (o Options) Gateway() netip.Addr  { return nth(o.CIDR, 2) }
func (o Options) Resolver() netip.Addr { return nth(o.CIDR, 3) }
func (o Options) Guest() netip.Addr    { return nth(o.CIDR, 100) }

func nth(p netip.Prefix, n byte) netip.Addr {
	a := p.Addr().As4()
	a[3] += n
	return netip.AddrFrom4(a)
}

// Help is slirp4netns 1.2.0's help text, flag for flag: clients search it
// for the flags they may pass.
const Help = `Usage: slirp4netns [OPTION]... PID|PATH [TAPNAME]
User-mode networking for unprivileged network namespaces (netns-run's slirp4netns mode).

-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
-r, --ready-fd=FD        specify the FD to write to when the network is configured
-m, --mtu=MTU            specify MTU (default=1500, max=65521)
-6, --enable-ipv6        enable IPv6 (experimental)
-a, --api-socket=PATH    specify API socket path
--cidr=CIDR              specify network address CIDR (default=10.0.2.0/24)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
--netns-type=TYPE        specify network namespace type ([path|pid], default=pid)
--userns-path=PATH       specify user namespace path
--enable-sandbox         create a new mount namespace (and drop all caps except CAP_NET_BIND_SERVICE if running as the root)
--enable-seccomp         enable seccomp to limit syscalls (experimental)
--outbound-addr=IPv4     sets outbound ipv4 address to bound to (experimental)
--outbound-addr6=IPv6    sets outbound ipv6 address to bound to (experimental)
--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect (experimental)
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
--target-type=TYPE       specify the target type ([netns|bess], default=netns)
-h, --help               show this help and exit
-v, --version            show version and exit
`
