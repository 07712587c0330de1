// Package runner runs one command in a sandbox: on a private one-member
// segment hosted by this process, or as a member of a shared network hosted
// by the per-user daemon. Either way the parts are started in order and torn
// down in reverse, so that nothing outlives the command.
package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/hosts"
	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/sandbox"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

// Private is the network name of a one-member segment in the supervisor.
const Private = "private"

// None is the network name of a sandbox with only lo.
const None = "none"

// Host is the network name of a sandbox that keeps the caller's network
// namespace, as Docker's host network.
const Host = "host"

// AddHost is one --add-host entry.
type AddHost struct {
	Name        string
	IP          netip.Addr
	HostGateway bool // the address that reaches the host: the gateway
}

// Options are everything a run is asked for.
type Options struct {
	Argv    []string
	Name    string // default: the short id
	Network string // Private, or a network name or id
	IP      netip.Addr
	IP6     netip.Addr // --ip6, on a dual-stack network
	MAC     string
	Links   []wire.LinkedName
	Aliases []string
	Publish []forward.Mapping
	// HostForwards: the sandbox's loopback ports that reach the host's (-T).
	HostForwards []forward.HostForward
	HostLoopback bool
	// IPv6 gives --network private its IPv6 side (fd00::/64).
	IPv6 bool
	// Tty gives the command a pty copied to stdout, and Interactive copies
	// stdin into it (run -t, run -it).
	Tty, Interactive bool
	// OpenStdin records that input was asked for (-i), also where the
	// supervisor itself copies none (-itd): attach then passes its own.
	OpenStdin bool
	// Pcap, on the private network, is a file to write every packet of
	// eth0 to, in pcap format.
	Pcap string
	// Env are KEY=VALUE set on top of the caller's environment (-e,
	// --env-file), after HOSTNAME, which names the sandbox.
	Env          []string
	DNS          []netip.Addr // run --dns: resolv.conf's, or the upstreams of a user-defined network's resolver
	DNSSearch    []string
	DNSOptions   []string
	DNSUpstreams []netip.AddrPort // the private resolver's upstreams; default: the host's
	Hostname     string
	AddHosts     []AddHost
	MTU          int
	AutoUserNS   bool
	LinkMode     tap.Mode
	Detached     bool // keep the record after exit (unless AutoRemove), for ps -a and logs
	AutoRemove   bool
	// ID is the sandbox's id when the caller chose it (a detached run
	// names its log by it); empty: a new one.
	ID string
	// Ready, when set, is called once the command runs, or with the error
	// that stopped it from running.
	Ready  func(err error)
	Logger *slog.Logger
	Stderr io.Writer // where netns-run's own notices go
}

// placement is where on its network a sandbox sits, and what follows
// from it; the paths fill it in so that Options stay as asked.
type placement struct {
	ip          netip.Addr
	prefix      netip.Prefix
	gateway     netip.Addr
	ip6         netip.Prefix // the IPv6 address and its /64, on a dual-stack network
	gateway6    netip.Addr   // the gateway's link-local address, with ip6
	ipv6Gateway netip.Addr   // the network's IPv6 gateway, as inspect shows it
	nameservers []netip.Addr // resolv.conf's, unless --dns names others
	mac         net.HardwareAddr
	gwMAC       net.HardwareAddr
	linkMode    tap.Mode      // of eth0
	extra       []hosts.Entry // link entries
	kernel      bool          // eth0 comes later, a kernel macvlan adopted by the agent
	host        bool          // the caller's network namespace (--network host)
	// memberNames: the gateway's resolver answers member names (a
	// user-defined network), so resolv.conf says ndots:0, as Docker's
	// embedded DNS has it.
	memberNames bool
	linkEnv     []string // Docker's legacy link variables (the default bridge's --link)
	// network and networkID name the network as its definition does, for
	// the record (run asks by name or id prefix); empty: as asked.
	network, networkID string
}

// Run runs the command and returns its exit status. An error is
// netns-run's own (or the command's failure to start) and comes with the
// status to exit with.
func Run(opts Options) (int, error) {
	code, err := run0(opts)
	if err != nil && opts.Ready != nil {
		opts.Ready(err)
	}
	return code, err
}

func run0(opts Options) (int, error) {
	id := opts.ID
	if id == "" {
		var err error
		if id, err = NewID(); err != nil {
			return wire.ExitOwnError, err
		}
	}
	rt, reg, err := registry.OpenDefault()
	if err != nil {
		return wire.ExitOwnError, err
	}
	name, hostname := opts.Name, opts.Hostname
	if name == "" {
		name = id[:12]
	}
	if hostname == "" {
		hostname = id[:12]
		if opts.Network == Host {
			// Docker's host network names the container as the host.
			if h, err := os.Hostname(); err == nil {
				hostname = h
			}
		}
	}
	start, _ := registry.StartTime(os.Getpid())
	rec := registry.Record{
		ID: id, Name: name, Hostname: hostname, Network: opts.Network,
		Aliases: opts.Aliases, Command: opts.Argv, Env: opts.Env, Tty: opts.Tty, OpenStdin: opts.OpenStdin, StaticIP: opts.IP.IsValid(), StaticIP6: opts.IP6.IsValid(), Links: dockerLinks(opts.Links, name), Created: time.Now(),
		Pid: os.Getpid(), PidStart: start, State: registry.Running,
		Detached: opts.Detached, AutoRemove: opts.AutoRemove,
	}
	if opts.Detached {
		rec.LogPath = filepath.Join(reg.Dir(), id+".log")
	}
	// Made while the agent starts (startSandbox), ~0.4 ms less before the
	// command runs; on a shared network before the daemon gives the
	// sandbox an address (createRecord).
	r := &run{opts: opts, id: id, name: name, hostname: hostname, rt: rt, reg: reg, log: opts.Logger, fastPath: loopbackFastPath(), record: &rec}
	var code int
	switch opts.Network {
	case Private:
		code, err = r.private()
	case None:
		code, err = r.none()
	case Host:
		code, err = r.host()
	default:
		code, err = r.sharedOrKernel()
	}
	r.undo.unwind()
	r.finish(code)
	if r.sb != nil {
		r.sb.EndAttaches(code)
	}
	return code, err
}

// dockerLinks are --link as Docker's HostConfig.Links lists them.
func dockerLinks(links []wire.LinkedName, self string) []string {
	var out []string
	for _, l := range links {
		alias := l.Alias
		if alias == "" {
			alias = l.Name
		}
		out = append(out, "/"+l.Name+":/"+self+"/"+alias)
	}
	return out
}

// run is one sandbox's supervision.
type run struct {
	undo      cleanups         // the teardown, unwound by run0
	serving   context.Context  // the service of the sandbox's sockets (exec, control, -T)
	signals   *signalForwarder // made by startSandbox
	record    *registry.Record // until createRecord has made it
	sb        *sandbox.Sandbox // once started: its attached clients are told the status after finish
	published *publishedPorts  // on a shared network only: the ports port add/rm change
	opts      Options          // as asked: what follows from them is kept here or in the placement
	id        string
	name      string
	hostname  string
	rt        string
	reg       *registry.Registry
	log       *slog.Logger
	fastPath  bool // serve loopback clients of published ports from inside (loopbackFastPath)
}

// fastPathEnv turns the loopback fast path of published ports off when
// set to 0, off or false: loopback clients then cross the gVisor stack
// and appear as the gateway, as world clients appear with their address.
// Only the supervisor reads it (a shared network's daemon, started by
// whichever run came first, serves the fast path of a member only when
// that member's supervisor sends it a dial channel).
const fastPathEnv = "NETNS_RUN_LOOPBACK_FASTPATH"

func loopbackFastPath() bool {
	switch strings.ToLower(os.Getenv(fastPathEnv)) {
	case "0", "off", "false", "no":
		return false
	}
	return true
}

// finish settles the record: gone, or kept as exited for ps -a.
func (r *run) finish(code int) {
	if !r.opts.Detached || r.opts.AutoRemove {
		r.reg.Remove(r.id)
		return
	}
	r.reg.Update(r.id, func(rec *registry.Record) {
		rec.State, rec.ExitCode, rec.Finished = registry.Exited, code, time.Now()
	})
}

// spec is the sandbox for a placement.
func (r *run) spec(p placement) wire.Spec {
	extra := append([]hosts.Entry{}, p.extra...)
	var added []hosts.Entry
	for _, h := range r.opts.AddHosts {
		if !h.HostGateway {
			added = append(added, hosts.Entry{IP: h.IP, Names: []string{h.Name}})
			continue
		}
		// host-gateway: the gateway of each family the sandbox has.
		added = append(added, hosts.Entry{IP: p.gateway, Names: []string{h.Name}})
		if p.ipv6Gateway.IsValid() {
			added = append(added, hosts.Entry{IP: p.ipv6Gateway, Names: []string{h.Name}})
		}
	}
	// Docker writes --add-host lines before --link lines.
	extra = append(added, extra...)
	// On a user-defined network --dns is where the gateway's resolver
	// forwards (dnsUpstreams), and resolv.conf keeps the gateway, as
	// Docker's embedded DNS; elsewhere --dns is resolv.conf's.
	nameservers := p.nameservers
	if len(r.opts.DNS) > 0 && !p.memberNames {
		nameservers = r.opts.DNS
	}
	var link *tap.Config
	if p.ip.IsValid() && !p.kernel {
		link = &tap.Config{
			Name: "eth0", Mode: p.linkMode, MTU: r.opts.MTU,
			MAC: p.mac.String(), PeerMAC: p.gwMAC.String(),
			Address: netip.PrefixFrom(p.ip, p.prefix.Bits()), Gateway: p.gateway,
			Address6: p.ip6, Gateway6: p.gateway6, NoIPv6: !p.ip6.IsValid(),
		}
	}
	self := []hosts.Entry{{IP: p.ip, Names: []string{r.hostname}}}
	if p.ip6.IsValid() {
		self = append(self, hosts.Entry{IP: p.ip6.Addr(), Names: []string{r.hostname}})
	}
	options := r.opts.DNSOptions
	if p.memberNames && !slices.ContainsFunc(options, func(o string) bool { return strings.HasPrefix(o, "ndots:") }) {
		options = append(slices.Clone(options), "ndots:0")
	}
	files := map[string][]byte{
		"/etc/hosts":       hosts.RenderHosts(extra, self...),
		"/etc/hostname":    hosts.RenderHostname(r.hostname),
		"/etc/resolv.conf": hosts.RenderResolvConf(nameservers, r.opts.DNSSearch, options),
	}
	if p.host {
		// The host's own files, as Docker's host network copies them
		// (with --add-host lines after; --dns flags still write
		// resolv.conf). A file the host lacks is left as it is.
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			files["/etc/hosts"] = hosts.AppendHosts(b, extra)
		} else {
			delete(files, "/etc/hosts")
		}
		if len(r.opts.DNS)+len(r.opts.DNSSearch)+len(r.opts.DNSOptions) == 0 {
			if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
				files["/etc/resolv.conf"] = b
			} else {
				delete(files, "/etc/resolv.conf")
			}
		}
	}
	return wire.Spec{
		Hostname:    r.hostname,
		Link:        link,
		HostNetwork: p.host,
		Tty:         r.opts.Tty,
		Files:       files,
		Argv:        r.opts.Argv,
		Env:         wire.MergeEnv(os.Environ(), slices.Concat([]string{"HOSTNAME=" + r.hostname}, p.linkEnv, r.opts.Env)),
		LoopbackTCP: sandboxPorts(r.opts.HostForwards),
	}
}

func sandboxPorts(fs []forward.HostForward) []uint16 {
	var ports []uint16
	for _, f := range fs {
		ports = append(ports, f.SandboxPort)
	}
	return ports
}

// serveHostForwards relays the clients of the sandbox's -T listeners to
// the host's loopback until ctx ends.
func (r *run) serveHostForwards(ctx context.Context, sb *sandbox.Sandbox) {
	hostPort := map[uint16]uint16{}
	for _, f := range r.opts.HostForwards {
		hostPort[f.SandboxPort] = f.HostPort
	}
	for _, ln := range sb.LoopbackListeners() {
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		go forward.ServeToHost(ctx, ln, hostPort[port])
	}
}

// createRecord makes the sandbox's record, once: before a network daemon
// gives it an address, as a daemon that starts anew keeps the addresses
// of recorded sandboxes only.
func (r *run) createRecord() error {
	if r.record == nil {
		return nil
	}
	if err := r.reg.Create(*r.record); err != nil {
		return err
	}
	r.record = nil
	return nil
}

// startSandbox starts the agent and returns once it has made eth0. While
// the agent starts, this process creates the record, catches the signals
// it will forward (catchSignals) and runs prepare, if given, which may
// complete the placement p points to: the private network builds its
// stack meanwhile rather than after, a shared one joins its daemon
// (sandbox.Options.WhileStarting). The -T listeners are served from here
// on; the rest once the command runs (serve).
func (r *run) startSandbox(p *placement, prepare func(*placement) error) (*sandbox.Sandbox, error) {
	sb, err := sandbox.Start(r.spec(*p), sandbox.Options{
		AutoUserNS: r.opts.AutoUserNS, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Tty: r.opts.Tty, Interactive: r.opts.Interactive,
		WhileStarting: func(spec *wire.Spec) error {
			if err := r.createRecord(); err != nil {
				return err
			}
			r.signals = catchSignals()
			r.undo.push(r.signals.stop)
			if prepare == nil {
				return nil
			}
			if err := prepare(p); err != nil {
				return err
			}
			*spec = r.spec(*p)
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	// Safe after Wait: it only makes sure that nothing of it is left.
	r.undo.push(sb.Kill)
	r.sb = sb
	for _, w := range sb.Warnings() {
		r.log.Warn(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.serving = ctx
	r.undo.push(cancel)
	r.serveHostForwards(ctx, sb)
	return sb, nil
}

// serve serves the sandbox's exec and control sockets until run0 ends,
// and records where the sandbox sits. It runs once the command does: the
// command needs none of it, and the ~0.8 ms it takes (one more write of
// the record before it, ~0.5 ms) would delay it. It
// fails only if the runtime directory, where registry.Create has just
// written, has broken under us.
func (r *run) serve(sb *sandbox.Sandbox, p placement, ports []forward.Mapping) error {
	// netns-run exec NAME reaches the agent through this socket.
	sock := filepath.Join(r.reg.Dir(), r.id+".sock")
	ln, err := sandbox.ListenExec(sock)
	if err != nil {
		return err
	}
	go sandbox.ServeExec(r.serving, ln, sb)
	ctl, err := r.serveControl(r.serving, sb)
	if err != nil {
		return err
	}
	r.reg.Update(r.id, func(rec *registry.Record) {
		if p.networkID != "" {
			rec.Network, rec.NetworkID = p.network, p.networkID
		}
		if p.ip.IsValid() {
			rec.IP, rec.Prefix, rec.Gateway, rec.MAC = p.ip, p.prefix.Bits(), p.gateway, p.mac.String()
		}
		if p.ip6.IsValid() {
			rec.IP6, rec.Prefix6, rec.Gateway6 = p.ip6.Addr(), p.ip6.Bits(), p.ipv6Gateway
		}
		rec.AgentPid, rec.Ports, rec.ExecSocket, rec.ControlSocket = sb.Pid(), ports, sock, ctl
	})
	return nil
}

// sharedOrKernel joins a network: through the daemon, or for a macvlan
// network with a parent interface, on a kernel macvlan.
func (r *run) sharedOrKernel() (int, error) {
	store, err := openStore()
	if err != nil {
		return wire.ExitOwnError, err
	}
	n, err := store.Get(r.opts.Network)
	if err != nil {
		return wire.ExitOwnError, err
	}
	if n.Options[netstore.OptParent] != "" {
		return r.kernelMacvlan(n)
	}
	return r.shared()
}

// none runs the sandbox with lo only.
func (r *run) none() (int, error) {
	sb, err := r.startSandbox(&placement{}, nil)
	if err != nil {
		return statusOf(err), err
	}
	return r.runAndWait(sb, placement{}, nil, nil)
}

// host keeps the caller's network namespace; the sandbox's /etc/hosts and
// resolv.conf are the host's, as Docker's host network copies them.
func (r *run) host() (int, error) {
	p := placement{host: true}
	sb, err := r.startSandbox(&p, nil)
	if err != nil {
		return statusOf(err), err
	}
	return r.runAndWait(sb, p, nil, nil)
}

// reportAuto prints the host ports picked for mappings that asked for any.
func (r *run) reportAuto(bound []forward.Mapping) {
	for i, m := range bound {
		if i < len(r.opts.Publish) && r.opts.Publish[i].HostPort == 0 {
			fmt.Fprintf(r.opts.Stderr, "netns-run: published %s\n", m)
		}
	}
}

// runAndWait lets the command go, serves the sandbox (serve), passes
// signals on and returns the command's status (on error the sandbox is
// killed by the run's teardown). running, when not nil, is
// called once the command runs, before Ready.
func (r *run) runAndWait(sb *sandbox.Sandbox, p placement, ports []forward.Mapping, running func()) (int, error) {
	r.signals.forwardTo(sb)
	if err := sb.Run(); err != nil {
		return wire.ExitOwnError, err
	}
	if err := r.serve(sb, p, ports); err != nil {
		return wire.ExitOwnError, err
	}
	if running != nil {
		running()
	}
	if r.opts.Ready != nil {
		r.opts.Ready(nil)
		r.opts.Ready = nil
	}
	go r.harden(sb)
	return sb.Wait()
}

func statusOf(err error) int {
	var se *sandbox.Error
	if errors.As(err, &se) {
		return se.Code
	}
	return wire.ExitOwnError
}

// NewID returns a Docker-like 64-hex-digit id.
func NewID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make sandbox id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// signalForwarder passes the signals a user sends netns-run on to the
// command. It is made while the agent starts (catchSignals): the Go runtime
// takes ~0.7 ms to enable the seven signals, one hand-off to its signal
// thread each, which would otherwise delay the command. Until forwardTo
// names the sandbox, a signal does what it would without the handler: INT,
// TERM, HUP and QUIT end netns-run (and the agent with it, by Pdeathsig),
// the others are ignored.
type signalForwarder struct {
	ch   chan os.Signal
	sb   chan *sandbox.Sandbox
	done chan struct{}
}

func catchSignals() *signalForwarder {
	f := &signalForwarder{ch: make(chan os.Signal, 8), sb: make(chan *sandbox.Sandbox, 1), done: make(chan struct{})}
	signal.Notify(f.ch, wire.ForwardedSignals...)
	go f.forward()
	return f
}

func (f *signalForwarder) forward() {
	var sb *sandbox.Sandbox
	for {
		select {
		case sb = <-f.sb:
		case sig := <-f.ch:
			switch {
			case sb == nil && (sig == syscall.SIGINT || sig == syscall.SIGTERM || sig == syscall.SIGHUP || sig == syscall.SIGQUIT):
				signal.Reset(sig)
				unix.Kill(unix.Getpid(), sig.(syscall.Signal))
			case sb == nil:
			case sig == syscall.SIGWINCH && sb.ResizeTerminal():
				// The pty's new size signals the command's foreground
				// group itself.
			case sig == syscall.SIGINT && inForegroundOfTerminal():
				// A terminal's ^C already reached the whole foreground
				// group, the command included: do not deliver it twice.
			default:
				sb.Signal(sig)
			}
		case <-f.done:
			return
		}
	}
}

// forwardTo starts passing signals on to sb's command.
func (f *signalForwarder) forwardTo(sb *sandbox.Sandbox) { f.sb <- sb }

func (f *signalForwarder) stop() {
	signal.Stop(f.ch)
	close(f.done)
}

func inForegroundOfTerminal() bool {
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}
