package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/e2e/internal/fakedns"
	"github.com/netns-run/netns-run/e2e/internal/whoami"
	"github.com/netns-run/netns-run/e2e/internal/worldapi"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// world is the launcher's handle on the world agent.
type world struct {
	pid   int
	exit  <-chan syscall.WaitStatus
	goW   *os.File // agent's stdin: "go" once its network is wired
	readR *os.File // agent's stdout: "ready" once it serves
}

// startWorld starts the agent in a network namespace of its own. It waits
// for "go" on stdin before it binds anything.
func startWorld(sock string, tu testUser, r *reaper) (*world, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/proc/self/exe",
		"-sock", sock,
		"-uid", strconv.FormatUint(uint64(tu.uid), 10),
		"-gid", strconv.FormatUint(uint64(tu.gid), 10))
	cmd.Args[0] = "outerns-world"
	cmd.Env = []string{stageEnv + "=" + stageWorld, "PATH=" + testPath}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
	if os.Getuid() != 0 {
		cmd.SysProcAttr.AmbientCaps = launcherCaps
	}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("starting the world agent: %w", err)
	}
	pid := cmd.Process.Pid
	return &world{pid: pid, exit: r.wait(pid), goW: inW, readR: outR}, nil
}

// wire creates the veth pair world0 (host, 198.51.100.1/24 and
// 2001:db8::1/64) <-> eth0 (world, 198.51.100.2/24 and 2001:db8::2/64),
// brings both and the world's lo up, and tells the agent.
func (w *world) wire() error {
	ns, err := netns.GetFromPid(w.pid)
	if err != nil {
		return fmt.Errorf("opening the world network namespace: %w", err)
	}
	defer ns.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostIf},
		PeerName:      worldIf,
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("creating veth %s<->%s: %w", hostIf, worldIf, err)
	}
	if err := configure(&netlink.Handle{}, hostIf, hostIP, hostIP6); err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in the world namespace: %w", err)
	}
	defer h.Close()
	if err := configure(h, worldIf, worldIP, worldIP6); err != nil {
		return err
	}
	if err := addAddr(h, worldIf, altDNSIP); err != nil {
		return err
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("world lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("world lo up: %w", err)
	}
	if _, err := io.WriteString(w.goW, "go\n"); err != nil {
		return fmt.Errorf("telling the world agent to start: %w", err)
	}
	return nil
}

// addAddr gives the link name one more IPv4 address of the /24.
func addAddr(h *netlink.Handle, name, ip string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	addr, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", ip, prefixLen))
	if err != nil {
		return err
	}
	if err := h.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", addr, name, err)
	}
	return nil
}

func configure(h *netlink.Handle, name, ip, ip6 string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	addr, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", ip, prefixLen))
	if err != nil {
		return err
	}
	if err := h.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", addr, name, err)
	}
	// No duplicate address detection: the address is usable at once.
	addr6, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", ip6, prefixLen6))
	if err != nil {
		return err
	}
	addr6.Flags = unix.IFA_F_NODAD
	if err := h.AddrAdd(l, addr6); err != nil {
		return fmt.Errorf("adding %s to %s: %w", addr6, name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return nil
}

func (w *world) waitReady(timeout time.Duration) error {
	_ = w.readR.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(w.readR).ReadString('\n')
	if err != nil {
		return fmt.Errorf("waiting for the world agent: %w", err)
	}
	if strings.TrimSpace(line) != "ready" {
		return fmt.Errorf("world agent said %q, want ready", line)
	}
	return nil
}

// stop kills the agent by its pid and waits for it, briefly.
func (w *world) stop() {
	if w.exit != nil {
		_ = syscall.Kill(w.pid, syscall.SIGKILL)
		select {
		case <-w.exit:
		case <-time.After(5 * time.Second):
			fmt.Fprintf(os.Stderr, "outerns: world agent (pid %d) did not exit after SIGKILL\n", w.pid)
		}
	}
	w.goW.Close()
	w.readR.Close()
}

var (
	testNet  = &net.IPNet{IP: net.IPv4(198, 51, 100, 0).To4(), Mask: net.CIDRMask(prefixLen, 32)}
	testNet6 = &net.IPNet{IP: net.ParseIP("2001:db8::"), Mask: net.CIDRMask(prefixLen6, 128)}
)

func worldMain(args []string) error {
	fs := flag.NewFlagSet("outerns-world", flag.ContinueOnError)
	sock := fs.String("sock", "", "control socket path")
	uid := fs.Int("uid", -1, "owner of the control socket")
	gid := fs.Int("gid", -1, "group of the control socket")
	if err := fs.Parse(args); err != nil {
		return err
	}
	in := bufio.NewReader(os.Stdin)
	if line, err := in.ReadString('\n'); err != nil || strings.TrimSpace(line) != "go" {
		return fmt.Errorf("world: no go from the launcher (%q, %v)", line, err)
	}
	// The launcher holds our stdin: EOF means it is gone.
	go func() {
		_, _ = io.Copy(io.Discard, in)
		os.Exit(0)
	}()

	for _, ip := range []string{worldIP, worldIP6} {
		wa := net.JoinHostPort(ip, strconv.Itoa(whoamiPort))
		tl, err := net.Listen("tcp", wa)
		if err != nil {
			return fmt.Errorf("world: %w", err)
		}
		go func() { _ = whoami.ServeTCP(tl) }()
		up, err := net.ListenPacket("udp", wa)
		if err != nil {
			return fmt.Errorf("world: %w", err)
		}
		go func() { _ = whoami.ServeUDP(up) }()
	}

	// The world's DNS, and a second one that knows another name (run --dns).
	if err := serveWorldDNS(worldIP, map[string][]string{worldName: {worldIP}}); err != nil {
		return err
	}
	if err := serveWorldDNS(altDNSIP, map[string][]string{altDNSName: {altDNSAddr}}); err != nil {
		return err
	}

	_ = os.Remove(*sock)
	ul, err := net.Listen("unix", *sock)
	if err != nil {
		return fmt.Errorf("world control socket: %w", err)
	}
	if *uid >= 0 {
		if err := os.Chown(*sock, *uid, *gid); err != nil {
			return fmt.Errorf("world control socket: %w", err)
		}
	}
	if err := os.Chmod(*sock, 0o600); err != nil {
		return fmt.Errorf("world control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "pong\n")
	})
	mux.HandleFunc("POST /dial", handleDial)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ul) }()

	if _, err := io.WriteString(os.Stdout, "ready\n"); err != nil {
		return err
	}
	select {} // until the launcher kills us
}

func handleDial(w http.ResponseWriter, r *http.Request) {
	var req worldapi.DialRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	host, _, err := net.SplitHostPort(req.Addr)
	ip := net.ParseIP(host)
	if err != nil || ip == nil || !testNet.Contains(ip) && !testNet6.Contains(ip) {
		// The world only ever talks to the test network.
		http.Error(w, fmt.Sprintf("addr %q: want IP:PORT in %s or %s", req.Addr, testNet, testNet6), http.StatusBadRequest)
		return
	}
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	timeout = min(timeout, 30*time.Second)
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	var resp worldapi.DialResponse
	switch req.Net {
	case "tcp":
		resp = dialTCP(ctx, req)
	case "udp":
		resp = dialUDP(ctx, req)
	default:
		http.Error(w, fmt.Sprintf("net %q: want tcp or udp", req.Net), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func dialTCP(ctx context.Context, req worldapi.DialRequest) worldapi.DialResponse {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", req.Addr)
	if err != nil {
		return worldapi.DialResponse{Error: err.Error()}
	}
	defer c.Close()
	resp := worldapi.DialResponse{Local: c.LocalAddr().String()}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if req.Send != "" {
		if _, err := io.WriteString(c, req.Send); err != nil {
			resp.Error = err.Error()
			return resp
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	resp.Reply = string(b)
	if err != nil {
		resp.Error = err.Error()
	}
	return resp
}

func dialUDP(ctx context.Context, req worldapi.DialRequest) worldapi.DialResponse {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", req.Addr)
	if err != nil {
		return worldapi.DialResponse{Error: err.Error()}
	}
	defer c.Close()
	resp := worldapi.DialResponse{Local: c.LocalAddr().String()}
	buf := make([]byte, 65536)
	for {
		if _, err := io.WriteString(c, req.Send); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			resp.Error = err.Error()
			return resp
		}
		next := time.Now().Add(500 * time.Millisecond)
		if dl, ok := ctx.Deadline(); ok && dl.Before(next) {
			next = dl
		}
		_ = c.SetReadDeadline(next)
		n, err := c.Read(buf)
		if err == nil {
			resp.Reply = string(buf[:n])
			return resp
		}
		if ctx.Err() != nil {
			resp.Error = fmt.Sprintf("no reply before the deadline (last error: %v)", err)
			return resp
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				resp.Error = err.Error()
				return resp
			}
		} else {
			// Nobody listening yet: don't spin.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// serveWorldDNS answers records on ip port 53, over UDP and TCP.
func serveWorldDNS(ip string, records map[string][]string) error {
	a := net.JoinHostPort(ip, "53")
	pc, err := net.ListenPacket("udp4", a)
	if err != nil {
		return fmt.Errorf("world dns at %s: %w", a, err)
	}
	ln, err := net.Listen("tcp4", a)
	if err != nil {
		return fmt.Errorf("world dns at %s: %w", a, err)
	}
	_, err = fakedns.Start(pc, ln, records)
	return err
}
