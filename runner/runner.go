// Package runner runs one command in a sandbox on a private, one-member
// segment hosted by this process: the sandbox, the gateway stack, the DNS
// proxy and the published ports, started in that order and torn down in
// reverse, so that nothing outlives the command.
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
	"sync"
	"syscall"

	"github.com/netns-run/netns-run/dnsproxy"
	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/hosts"
	"github.com/netns-run/netns-run/sandbox"
	"github.com/netns-run/netns-run/stack"
	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

// AddHost is one --add-host entry.
type AddHost struct {
	Name        string
	IP          netip.Addr
	HostGateway bool // the address that reaches the host: the gateway
}

// Options are everything a run is asked for.
type Options struct {
	Argv         []string
	Publish      []forward.Mapping
	HostLoopback bool
	DNS          []netip.Addr // written into resolv.conf instead of the proxy
	DNSSearch    []string
	DNSOptions   []string
	DNSUpstreams []netip.AddrPort // the proxy's upstreams; default: the host's
	Hostname     string
	AddHosts     []AddHost
	MTU          int
	AutoUserNS   bool
	LinkMode     tap.Mode
	Logger       *slog.Logger
	Stderr       io.Writer // where netns-run's own notices go
}

// The private segment, as slirp4netns lays it out.
var (
	subnet     = netip.MustParsePrefix("10.0.2.0/24")
	gatewayIP  = netip.MustParseAddr("10.0.2.2")
	resolverIP = netip.MustParseAddr("10.0.2.3")
	memberIP   = netip.MustParseAddr("10.0.2.100")
)

// MAC is Docker's rule: 02:42 followed by the IPv4 address.
func MAC(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return net.HardwareAddr{0x02, 0x42, a[0], a[1], a[2], a[3]}
}

// Run runs the command and returns its exit status. An error is
// netns-run's own (or the command's failure to start) and comes with the
// status to exit with.
func Run(opts Options) (int, error) {
	log := opts.Logger
	upstreams, err := upstreams(opts.DNSUpstreams)
	if err != nil {
		return sandbox.ExitOwnError, err
	}
	proxy, err := dnsproxy.New(dnsproxy.Config{Upstreams: upstreams, Logger: log})
	if err != nil {
		return sandbox.ExitOwnError, fmt.Errorf("DNS proxy: %w", err)
	}
	// Ports first: a port in use must fail before anything is made.
	listeners, err := forward.Bind(opts.Publish)
	if err != nil {
		return sandbox.ExitOwnError, err
	}
	closeListeners := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	spec, err := buildSpec(opts)
	if err != nil {
		closeListeners()
		return sandbox.ExitOwnError, err
	}
	sb, err := sandbox.Start(spec, sandbox.Options{AutoUserNS: opts.AutoUserNS, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	if err != nil {
		closeListeners()
		return statusOf(err), err
	}
	for _, w := range sb.Warnings() {
		log.Warn(w)
	}
	link := sb.Link()
	gw, err := stack.New(stack.Config{
		Subnet: subnet, Gateway: gatewayIP, Resolver: resolverIP,
		GatewayMAC: MAC(gatewayIP), MTU: uint32(opts.MTU),
		HostLoopback: opts.HostLoopback, Logger: log,
	}, stack.Link{FD: link.FD, Packet: link.Mode == tap.ModePacket})
	if err != nil {
		sb.Kill()
		closeListeners()
		return sandbox.ExitOwnError, err
	}
	log.Debug("sandbox up", "pid", sb.Pid(), "link", link.Mode)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if err := serveDNS(ctx, &wg, gw, proxy); err != nil {
		cancel()
		sb.Kill()
		gw.Close()
		closeListeners()
		return sandbox.ExitOwnError, err
	}
	for i, l := range listeners {
		if opts.Publish[i].HostPort == 0 {
			fmt.Fprintf(opts.Stderr, "netns-run: published %s\n", l.Mapping())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Serve(ctx, memberIP, gw)
		}()
	}

	stopSignals := forwardSignals(sb)
	code, err := runAndWait(sb)
	stopSignals()
	cancel()
	gw.Close()
	wg.Wait()
	return code, err
}

func runAndWait(sb *sandbox.Sandbox) (int, error) {
	if err := sb.Run(); err != nil {
		sb.Kill()
		return sandbox.ExitOwnError, err
	}
	code, err := sb.Wait()
	return code, err
}

func statusOf(err error) int {
	var se *sandbox.Error
	if errors.As(err, &se) {
		return se.Code
	}
	return sandbox.ExitOwnError
}

func serveDNS(ctx context.Context, wg *sync.WaitGroup, gw *stack.Gateway, proxy *dnsproxy.Proxy) error {
	pc, ln, err := gw.ListenResolver()
	if err != nil {
		return err
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		proxy.ServePacket(ctx, pc)
	}()
	go func() {
		defer wg.Done()
		proxy.ServeStream(ctx, ln)
	}()
	return nil
}

// upstreams are the asked ones, else every nameserver of the host's
// resolv.conf in order, else the resolver glibc assumes when it has none.
func upstreams(asked []netip.AddrPort) ([]netip.AddrPort, error) {
	if len(asked) > 0 {
		return asked, nil
	}
	var out []netip.AddrPort
	if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		ns, _, _ := hosts.ParseResolvConf(data)
		for _, a := range ns {
			out = append(out, netip.AddrPortFrom(a, 53))
		}
	}
	if len(out) == 0 {
		out = append(out, netip.MustParseAddrPort("127.0.0.1:53"))
	}
	return out, nil
}

// newID returns a Docker-like 64-hex-digit id.
func newID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make sandbox id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func buildSpec(opts Options) (sandbox.Spec, error) {
	id, err := newID()
	if err != nil {
		return sandbox.Spec{}, err
	}
	hostname := opts.Hostname
	if hostname == "" {
		hostname = id[:12]
	}
	var extra []hosts.Entry
	for _, h := range opts.AddHosts {
		ip := h.IP
		if h.HostGateway {
			ip = gatewayIP
		}
		extra = append(extra, hosts.Entry{IP: ip, Names: []string{h.Name}})
	}
	nameservers := opts.DNS
	if len(nameservers) == 0 {
		nameservers = []netip.Addr{resolverIP}
	}
	return sandbox.Spec{
		Hostname: hostname,
		Link: tap.Config{
			Name: "eth0", Mode: opts.LinkMode, MTU: opts.MTU,
			MAC: MAC(memberIP).String(), PeerMAC: MAC(gatewayIP).String(),
			Address: netip.PrefixFrom(memberIP, subnet.Bits()), Gateway: gatewayIP,
		},
		Files: map[string][]byte{
			"/etc/hosts":       hosts.RenderHosts(hosts.Entry{IP: memberIP, Names: []string{hostname}}, extra),
			"/etc/hostname":    hosts.RenderHostname(hostname),
			"/etc/resolv.conf": hosts.RenderResolvConf(nameservers, opts.DNSSearch, opts.DNSOptions),
		},
		Argv: opts.Argv,
		Env:  os.Environ(),
	}, nil
}

// forwardSignals passes the signals a user sends netns-run on to the
// command, until the returned stop is called.
func forwardSignals(sb *sandbox.Sandbox) (stop func()) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, sandbox.ForwardedSignals()...)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-ch:
				// A terminal's ^C already reached the whole foreground
				// group, the command included: do not deliver it twice.
				if sig == syscall.SIGINT && inForegroundOfTerminal() {
					continue
				}
				sb.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

func inForegroundOfTerminal() bool {
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}
