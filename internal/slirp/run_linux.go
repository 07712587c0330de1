package slirp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/netns-run/netns-run/internal/ipam"
	"github.com/netns-run/netns-run/internal/seccomp"
	"github.com/netns-run/netns-run/stack"
	"github.com/netns-run/netns-run/stack/resolver"
)

// Version is what --version prints, in slirp4netns's layout (clients only
// show it).
func Version(netnsRunVersion string) string {
	return fmt.Sprintf("slirp4netns version 1.2.0+netns-run\nnetns-run version %s\n", netnsRunVersion)
}

// Main runs the slirp4netns command line args (without the program name)
// and returns the exit status: 0 after a clean end, 1 for a bad command
// line or a failure, as slirp4netns.
func Main(args []string, stdout, stderr io.Writer, version string) int {
	o, err := Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "slirp4netns: %v\n", err)
		return 1
	}
	switch {
	case o.Help:
		fmt.Fprint(stdout, Help)
		return 0
	case o.Version:
		fmt.Fprint(stdout, Version(version))
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(o, log); err != nil {
		fmt.Fprintf(stderr, "slirp4netns: %v\n", err)
		return 1
	}
	return 0
}

func run(o Options, log *slog.Logger) error {
	var outbound, outbound6 netip.Addr
	if o.OutboundAddr != "" {
		var err error
		if outbound, err = checkOutbound("--outbound-addr", o.OutboundAddr, false); err != nil {
			return err
		}
	}
	if o.OutboundAddr6 != "" {
		var err error
		if outbound6, err = checkOutbound("--outbound-addr6", o.OutboundAddr6, true); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	if o.ExitFD >= 0 {
		go watchExitFD(o.ExitFD, cancel)
	}

	cfg := stack.Config{
		Subnet: o.CIDR, Gateway: o.Gateway(), Resolver: o.Resolver(), GatewayMAC: ipam.MAC(o.Gateway()),
		MTU: uint32(o.MTU), HostLoopback: !o.DisableHostLoopback, OutboundAddr: outbound, Logger: log,
	}
	if o.IPv6 {
		cfg.IPv6 = &stack.IPv6Config{Subnet: subnet6, Gateway: gateway6, Resolver: resolver6, OutboundAddr: outbound6}
	}
	gw, err := stack.New(cfg)
	if err != nil {
		return err
	}
	defer gw.Close()
	fd, err := openTAP(o)
	if err != nil {
		return err
	}
	if err := gw.AttachFD(stack.Link{FD: fd}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if !o.DisableDNS {
		// The host's nameservers, read at start, as slirp4netns reads them.
		proxy, err := resolver.New(resolver.Config{Upstreams: resolver.HostUpstreams(), Logger: log})
		if err != nil {
			return fmt.Errorf("DNS forwarder: %w", err)
		}
		if err := gw.ServeDNS(ctx, &wg, proxy); err != nil {
			return err
		}
	}
	var api *api
	if o.APISocket != "" {
		if api, err = listenAPI(o.APISocket, newForwards(gw, o.Guest())); err != nil {
			return err
		}
		defer api.close()
		wg.Add(1)
		go func() { defer wg.Done(); api.serve(ctx) }()
	}
	if o.EnableSandbox {
		if err := sandbox(o, api, log); err != nil {
			return fmt.Errorf("--enable-sandbox: %w", err)
		}
	}
	if o.EnableSeccomp { // last: nothing of setup is on its allowlist
		if err := seccomp.Install(log); err != nil {
			return fmt.Errorf("--enable-seccomp: %w", err)
		}
	}
	if err := ready(o.ReadyFD); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// sandbox confines the process once everything is set up: an empty
// read-only root when it has a mount namespace of its own (Podman gives it
// one), then no capabilities but CAP_NET_BIND_SERVICE and no new
// privileges on every thread.
func sandbox(o Options, a *api, log *slog.Logger) error {
	keep := ""
	if a != nil {
		keep = a.path
	}
	unlink, done, err := emptyRoot(keep)
	if err != nil {
		return err
	}
	if !done {
		log.Warn("--enable-sandbox: no mount namespace of our own (the parent's is shared), so the root stays as it is")
	} else if a != nil {
		a.remove = unlink
	}
	return harden()
}

// slirp4netns's IPv6 layout (-6): a fixed prefix, whatever --cidr says.
var (
	subnet6   = netip.MustParsePrefix("fd00::/64")
	gateway6  = netip.MustParseAddr("fd00::2")
	resolver6 = netip.MustParseAddr("fd00::3")
)

// checkOutbound parses --outbound-addr (or, v6, --outbound-addr6) and
// makes sure it is an address of this host, so that a typo fails at start
// rather than every connection.
func checkOutbound(flag, s string, v6 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	family, network := "IPv4", "tcp4"
	if v6 {
		family, network = "IPv6", "tcp6"
	}
	if err != nil || a.Is4() == v6 || a.Is4In6() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s: %q is not an %s address", flag, s, family)
	}
	ln, err := net.ListenTCP(network, &net.TCPAddr{IP: a.AsSlice()})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %s: not an address of this host: %w", flag, a, err)
	}
	ln.Close()
	return a, nil
}

// ready tells the client that the network is up: "1" on the ready fd,
// which is then closed.
func ready(fd int) error {
	if fd < 0 {
		return nil
	}
	f := os.NewFile(uintptr(fd), "ready-fd")
	defer f.Close()
	if _, err := f.Write([]byte("1")); err != nil {
		return fmt.Errorf("ready fd %d: %w", fd, err)
	}
	return nil
}

// watchExitFD ends the process when the exit fd reports EOF or an error
// (its writer, e.g. conmon, is gone).
func watchExitFD(fd int, cancel context.CancelFunc) {
	f := os.NewFile(uintptr(fd), "exit-fd")
	defer f.Close()
	io.Copy(io.Discard, f)
	cancel()
}

// executable is this binary, for the helper that opens the TAP.
func executable() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this executable: %w", err)
	}
	return filepath.Clean(p), nil
}
