//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"unicode"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/hosts"
	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/runner"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runFlags are the flags of `netns-run [flags] -- CMD` and `netns-run run`.
type runFlags struct {
	publish      []string
	tcpNS        []string
	hostLoopback bool
	ipv6         bool
	env          []string
	envFiles     []string
	pcap         string
	tty          bool
	interactive  bool
	dns          []string
	dnsSearch    []string
	dnsOption    []string
	dnsUpstream  []string
	hostname     string
	addHost      []string
	mtu          int
	userns       string
	linkMode     string
	logLevel     string
	logFormat    string
	network      string
	name         string
	ip           string
	ip6          string
	mac          string
	links        []string
	aliases      []string
	detach       bool
	autoRemove   bool
}

func (f *runFlags) register(fs *pflag.FlagSet) {
	fs.SetInterspersed(false) // flags after CMD are CMD's
	stringListVarP(fs, &f.publish, "publish", "p", "publish a port: [HOST_IP:][HOST_PORT[-END]:]PORT[-END][/tcp|/udp] (repeatable)")
	stringListVarP(fs, &f.tcpNS, "tcp-ns", "T", "forward the sandbox's 127.0.0.1 (and ::1) TCP ports to the host's loopback, as pasta -T: PORT[-END][:HOST_PORT[-END]][,...] (repeatable)")
	fs.BoolVar(&f.hostLoopback, "host-loopback", false, "let the sandbox reach the host's 127.0.0.1:PORT at GATEWAY:PORT (and ::1:PORT at fd00::2 on --network private)")
	stringListVarP(fs, &f.env, "env", "e", "set KEY=VALUE in the command's environment (a bare KEY takes this shell's value; repeatable)")
	stringListVarP(fs, &f.envFiles, "env-file", "", "read KEY=VALUE lines from a file, as Docker does (repeatable)")
	fs.BoolVarP(&f.tty, "tty", "t", false, "give the command a terminal (a new pty; window size changes follow), as docker run -t")
	fs.BoolVarP(&f.interactive, "interactive", "i", false, "with -t, copy stdin into the terminal (without -t, a foreground command always has stdin; a detached one has none)")
	fs.StringVar(&f.pcap, "pcap", "", "on --network private, write every packet of eth0 to FILE in pcap format (tcpdump -r FILE), as pasta's --pcap")
	fs.BoolVar(&f.ipv6, "ipv6", true, "on --network private, dual stack: an fd00::/64 address on eth0, the gateway fd00::2 (the host's ::1 with --host-loopback) and DNS at fd00::3; --ipv6=false for IPv4 only (a shared network is dual stack when made with network create --ipv6)")
	stringListVarP(fs, &f.dns, "dns", "", "on a network from network create: the upstream its resolver forwards this sandbox's queries to; elsewhere resolv.conf's nameserver instead of the built-in resolver (repeatable)")
	stringListVarP(fs, &f.dnsSearch, "dns-search", "", "DNS search domain (repeatable)")
	stringListVarP(fs, &f.dnsOption, "dns-option", "", "resolv.conf option (repeatable)")
	stringListVarP(fs, &f.dnsUpstream, "dns-upstream", "", "upstream ADDR[:PORT] for the built-in resolver instead of the host's nameservers (repeatable)")
	fs.StringVar(&f.hostname, "hostname", "", "the sandbox's hostname (default: its 12-hex-digit short id)")
	stringListVarP(fs, &f.addHost, "add-host", "", "add NAME:IP (or NAME:host-gateway) to the sandbox's /etc/hosts (repeatable)")
	fs.IntVar(&f.mtu, "mtu", 65520, "MTU of the sandbox's eth0")
	fs.StringVar(&f.userns, "userns", "", `"auto": map a subordinate id range (newuidmap) besides the caller`)
	fs.StringVar(&f.linkMode, "link-mode", "auto", "how eth0 is made: tap, packet (veth + AF_PACKET, no /dev/net/tun needed) or auto")
	fs.StringVar(&f.network, "network", "bridge", `network to join: "bridge" (shared, 172.17.0.0/16), one made with netns-run network create, "private" (a one-member network in this process, no daemon), "none" (lo only) or "host" (the caller's own network, as Docker's host network)`)
	fs.StringVar(&f.name, "name", "", "the sandbox's name (default: its short id)")
	fs.StringVar(&f.ip, "ip", "", "static IPv4 address on the network")
	fs.StringVar(&f.ip6, "ip6", "", "static IPv6 address on a dual-stack network (network create --ipv6)")
	fs.StringVar(&f.mac, "mac-address", "", "MAC address (default: 02:42 + the IPv4 address)")
	stringListVarP(fs, &f.links, "link", "", "add NAME[:ALIAS] of another sandbox on the network to /etc/hosts (repeatable)")
	stringListVarP(fs, &f.aliases, "network-alias", "", "another name the network's DNS answers for this sandbox (repeatable)")
	fs.BoolVarP(&f.detach, "detach", "d", false, "run in the background; see ps, logs, stop")
	fs.BoolVar(&f.autoRemove, "rm", false, "with -d: forget the sandbox when it exits (foreground runs always do)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
}

// buildOnlyCommands are commands that build tags add (manpages.go).
var buildOnlyCommands []func() *cobra.Command

func newRootCommand() *cobra.Command {
	root := newRunRootCommand()
	root.AddCommand(newRunCommand(), networkCommandWithCapture(), newPsCommand(), newInspectCommand(), newStopCommand(),
		newRmCommand(), newLogsCommand(), newPortCommand(), newExecCommand(), newAttachCommand(), newStatsCommand(), newDaemonCommand())
	for _, c := range buildOnlyCommands {
		root.AddCommand(c())
	}
	completeNames(root)
	return root
}

// newRunRootCommand is the root command alone: netns-run [flags] -- CMD.
func newRunRootCommand() *cobra.Command {
	var f runFlags
	root := &cobra.Command{
		Use:           "netns-run [flags] -- CMD [ARG...]",
		Short:         "Run a command in an unprivileged sandbox with its own network",
		Args:          cobra.ArbitraryArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCommand(&f, args)
		},
	}
	f.register(root.Flags())
	return root
}

// newDetachedRootCommand parses a detached run's command line again, in
// its background process: the parent took it as the root's or run's, so
// those two find it the same way, and the other commands, their flags and
// completion would only be allocated to stay as garbage for the sandbox's
// life (docs/ARCHITECTURE.md, Measured facts: Memory of an idle member).
func newDetachedRootCommand() *cobra.Command {
	root := newRunRootCommand()
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newRunCommand())
	return root
}

func newRunCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] [--] CMD [ARG...]",
		Short: "Run a command in a sandbox (the same as netns-run [flags] -- CMD)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCommand(&f, args)
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func runCommand(f *runFlags, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command given: usage: netns-run [flags] -- CMD [ARG...]")
	}
	opts, err := f.options(args)
	if err != nil {
		return err
	}
	if f.detach && !isDetachedChild() {
		oneProcessorWhenIdle(opts)
		return startDetached(opts.ID)
	}
	if isDetachedChild() {
		opts.Ready = readyReporter()
	}
	code, err := runner.Run(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "netns-run: %v\n", err)
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// options turns flags into runner options, rejecting bad values with a
// message that names the flag.
func (f *runFlags) options(args []string) (runner.Options, error) {
	logger, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return runner.Options{}, err
	}
	env, err := envVars(f.env, f.envFiles)
	if err != nil {
		return runner.Options{}, err
	}
	o := runner.Options{Argv: args, Env: env, Pcap: f.pcap, Tty: f.tty, Interactive: f.interactive && !f.detach, OpenStdin: f.interactive, HostLoopback: f.hostLoopback, IPv6: f.ipv6, DNSOptions: f.dnsOption, MTU: f.mtu, Logger: logger, Stderr: os.Stderr}
	for _, d := range f.dnsSearch {
		if d == "." {
			continue // Docker's way to say: no search domain
		}
		if err := hosts.ValidHostname(strings.TrimSuffix(d, ".")); err != nil {
			return o, fmt.Errorf("invalid --dns-search: %w", err)
		}
		o.DNSSearch = append(o.DNSSearch, d)
	}
	for _, opt := range f.dnsOption {
		if opt == "" || strings.IndexFunc(opt, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '#' }) >= 0 {
			return o, fmt.Errorf("invalid --dns-option %q: want one resolv.conf option such as ndots:2 or edns0", opt)
		}
	}
	for _, spec := range f.publish {
		ms, err := forward.ParseSpec(spec)
		if err != nil {
			return o, err
		}
		o.Publish = append(o.Publish, ms...)
	}
	if o.HostForwards, err = forward.ParseHostForwards(f.tcpNS); err != nil {
		return o, err
	}
	if len(o.HostForwards) > wire.MaxLoopbackTCP {
		return o, fmt.Errorf("-T forwards %d ports; at most %d can be forwarded", len(o.HostForwards), wire.MaxLoopbackTCP)
	}
	for _, s := range f.dns {
		ip, err := netip.ParseAddr(s)
		if err != nil || strings.IndexFunc(ip.Zone(), func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return o, fmt.Errorf("invalid --dns %q: want an IP address", s)
		}
		o.DNS = append(o.DNS, ip)
	}
	for _, s := range f.dnsUpstream {
		ap, err := parseUpstream(s)
		if err != nil {
			return o, err
		}
		o.DNSUpstreams = append(o.DNSUpstreams, ap)
	}
	if f.hostname != "" {
		if err := hosts.ValidHostname(f.hostname); err != nil {
			return o, fmt.Errorf("invalid --hostname: %w", err)
		}
		if len(f.hostname) > 64 { // the kernel's limit for sethostname
			return o, fmt.Errorf("invalid --hostname: %d characters, at most 64", len(f.hostname))
		}
		o.Hostname = f.hostname
	}
	for _, s := range f.addHost {
		name, ip, hostGateway, err := hosts.ParseAddHost(s)
		if err != nil {
			return o, err
		}
		o.AddHosts = append(o.AddHosts, runner.AddHost{Name: name, IP: ip, HostGateway: hostGateway})
	}
	if f.mtu < 1280 || f.mtu > 65520 {
		return o, fmt.Errorf("invalid --mtu %d: want 1280-65520", f.mtu)
	}
	switch f.userns {
	case "":
	case "auto":
		o.AutoUserNS = true
	default:
		return o, fmt.Errorf("invalid --userns %q: the only mode is \"auto\"", f.userns)
	}
	if o.LinkMode, err = tap.ParseMode(f.linkMode); err != nil {
		return o, fmt.Errorf("invalid --link-mode: %w", err)
	}
	if err := f.networkOptions(&o); err != nil {
		return o, err
	}
	return o, nil
}

// parseUpstream accepts ADDR, ADDR:PORT, [V6] and [V6]:PORT.
func parseUpstream(s string) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(ip, 53), nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
		return ap, nil
	}
	return netip.AddrPort{}, fmt.Errorf("invalid --dns-upstream %q: want ADDR or ADDR:PORT", s)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: want text or json", format)
}

// networkOptions checks the flags that place the sandbox on a network.
func (f *runFlags) networkOptions(o *runner.Options) error {
	o.Network, o.Name, o.Aliases, o.MAC = f.network, f.name, f.aliases, f.mac
	o.Detached, o.AutoRemove = f.detach, f.autoRemove
	o.ID = detachedID()
	if f.name != "" && !netstore.ValidName(f.name) {
		return fmt.Errorf("invalid --name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", f.name)
	}
	if f.ip != "" {
		ip, err := netip.ParseAddr(f.ip)
		if err != nil || !ip.Is4() {
			return fmt.Errorf("invalid --ip %q: want an IPv4 address", f.ip)
		}
		o.IP = ip
	}
	if f.ip6 != "" {
		ip, err := parseIP6Flag(f.ip6)
		if err != nil {
			return err
		}
		o.IP6 = ip
	}
	if f.mac != "" {
		if _, err := net.ParseMAC(f.mac); err != nil {
			return fmt.Errorf("invalid --mac-address %q: want six hex bytes like 02:42:ac:11:00:02", f.mac)
		}
	}
	for _, l := range f.links {
		name, alias, _ := strings.Cut(l, ":")
		if name == "" || !netstore.ValidName(name) || (alias != "" && hosts.ValidHostname(alias) != nil) {
			return fmt.Errorf("invalid --link %q: want NAME or NAME:ALIAS", l)
		}
		o.Links = append(o.Links, wire.LinkedName{Name: name, Alias: alias})
	}
	for _, a := range f.aliases {
		if err := hosts.ValidHostname(a); err != nil {
			return fmt.Errorf("invalid --network-alias %q: %v", a, err)
		}
	}
	if f.network == runner.None && (len(f.publish) > 0 || f.hostLoopback) {
		return fmt.Errorf("--network none has no network to publish ports on or reach the host from: drop -p/--host-loopback or pick a network")
	}
	if f.network == runner.Host {
		if len(f.publish) > 0 || len(f.tcpNS) > 0 || f.hostLoopback {
			return fmt.Errorf("--network host shares the host's network: its ports are the host's already, so -p, -T and --host-loopback do not apply")
		}
		for _, h := range f.addHost {
			if strings.HasSuffix(h, ":host-gateway") {
				return fmt.Errorf("invalid --add-host %q: --network host has no gateway, the host's network is the sandbox's own: use an address such as 127.0.0.1", h)
			}
		}
	}
	if (f.network == runner.Private || f.network == runner.None || f.network == runner.Host) &&
		(f.ip != "" || f.ip6 != "" || f.mac != "" || len(f.links) > 0 || len(f.aliases) > 0) {
		return fmt.Errorf("--ip, --ip6, --mac-address, --link and --network-alias need a shared network: use --network bridge (the default) or one from netns-run network create")
	}
	if f.pcap != "" && f.network != runner.Private {
		return fmt.Errorf("--pcap captures --network private's eth0, whose stack runs in this process; drop it or use --network private")
	}
	// Only the private network's resolver runs in this process; anywhere
	// else the flag would be silently ignored (with --userns auto too).
	if f.network != runner.Private && len(f.dnsUpstream) > 0 {
		switch f.network {
		case runner.None:
			return fmt.Errorf("--dns-upstream applies to --network private; --network none has no resolver")
		case runner.Host:
			return fmt.Errorf("--dns-upstream applies to --network private; --network host uses the host's resolvers")
		}
		return fmt.Errorf("--dns-upstream applies to --network private; shared networks forward to the host's resolvers")
	}
	return nil
}

// parseIP6Flag reads --ip6: a global IPv6 address (not an IPv4 one, not a
// link-local one, which every member makes for itself).
func parseIP6Flag(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() || a.IsLoopback() {
		return netip.Addr{}, fmt.Errorf("invalid --ip6 %q: want a unicast IPv6 address in the network's IPv6 subnet, e.g. fd12:3456:789a:1::10", s)
	}
	return a, nil
}

// oneProcessorEnv marks a GOMAXPROCS that oneProcessorWhenIdle set, not
// the user.
const oneProcessorEnv = "_NETNS_RUN_ONE_PROCESSOR"

// oneProcessorWhenIdle starts a detached supervisor that hosts no network
// stack and relays no -T connections on one processor: it only waits, and
// each processor holds cached heap spans and threads of its own, 0.3 MiB
// per member (docs/ARCHITECTURE.md, Measured facts: Memory of an idle
// member). Only through its environment at exec: runtime.GOMAXPROCS(1)
// later measured worse than nothing. A GOMAXPROCS the user set stays.
// Unless the user set GODEBUG, profstackdepth=0 too: each thread would
// allocate two stack buffers for profiles no one takes from it (~13 KiB
// a supervisor). The variables go to the detached run only: this process
// exits next.
func oneProcessorWhenIdle(opts runner.Options) {
	if opts.Network == runner.Private || len(opts.HostForwards) > 0 || os.Getenv("GOMAXPROCS") != "" {
		return
	}
	os.Setenv("GOMAXPROCS", "1")
	mark := "1"
	if _, set := os.LookupEnv("GODEBUG"); !set {
		os.Setenv("GODEBUG", "profstackdepth=0")
		mark = oneProcessorGODEBUG
	}
	os.Setenv(oneProcessorEnv, mark)
}

// oneProcessorGODEBUG marks that oneProcessorWhenIdle set GODEBUG too.
const oneProcessorGODEBUG = "godebug"

// dropOneProcessorEnv removes oneProcessorWhenIdle's variables, which the
// runtime has read: the command's environment and a daemon this process
// starts must not inherit them.
func dropOneProcessorEnv() {
	switch os.Getenv(oneProcessorEnv) {
	case "":
		return
	case oneProcessorGODEBUG:
		os.Unsetenv("GODEBUG")
	}
	os.Unsetenv("GOMAXPROCS")
	os.Unsetenv(oneProcessorEnv)
}
