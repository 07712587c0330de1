package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netns-run/netns-run/e2e/internal/whoami"
)

// The loopback fast path of published ports: a TCP client on the host's
// loopback is served by a socket made inside the sandbox (it appears there
// as 127.0.0.1), relayed kernel socket to kernel socket; every other client
// crosses the gVisor stack and keeps its address, and UDP always does
// (loopback UDP clients appear as the gateway). With
// NETNS_RUN_LOOPBACK_FASTPATH=0 loopback TCP clients take the gVisor path
// too. One suite runs against both paths, on --network private (the
// supervisor relays) and on the shared bridge (the per-user daemon does).

// fastPathHelperEnv makes this test binary, run as a sandbox's command,
// serve the suite's ports instead of testing (see init).
const fastPathHelperEnv = "NETNS_RUN_E2E_FASTPATH_HELPER"

// Ports the helper serves inside the sandbox.
const (
	fpEcho       = 80 // 0.0.0.0: whoami (banner, then echo until EOF, then half-close)
	fpLoOnly     = 81 // 127.0.0.1 only: whoami
	fpServerHalf = 82 // 0.0.0.0: writes its banner and "bye", half-closes, then reads to EOF and reports it
	fpClosed     = 83 // nothing listens
	fpUDP        = 53 // 0.0.0.0/udp: whoami
)

func init() {
	if os.Getenv(fastPathHelperEnv) == "" {
		return
	}
	if err := serveFastPathHelper(); err != nil {
		fmt.Fprintln(os.Stderr, "fastpath helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveFastPathHelper() error {
	echo, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", fpEcho))
	if err != nil {
		return err
	}
	lo, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", fpLoOnly))
	if err != nil {
		return err
	}
	half, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", fpServerHalf))
	if err != nil {
		return err
	}
	udp, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", fpUDP))
	if err != nil {
		return err
	}
	go whoami.ServeTCP(echo)
	go whoami.ServeTCP(lo)
	go whoami.ServeUDP(udp)
	go func() {
		for {
			c, err := half.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(whoami.ConnLifetime))
				io.WriteString(c, whoami.Banner(c.RemoteAddr())+"bye")
				c.(*net.TCPConn).CloseWrite()
				b, err := io.ReadAll(c)
				fmt.Printf("server-first got %q, %v\n", b, err)
			}()
		}
	}()
	fmt.Println("ready")
	select {}
}

// fastPathNet is a network the suite runs on.
type fastPathNet struct {
	name    string // --network
	gateway string // where loopback clients appear on the gVisor path
	shared  bool   // served by the per-user daemon
}

var (
	bridgeNet    = fastPathNet{name: "bridge", gateway: "172.17.0.1", shared: true}
	fastPathNets = []fastPathNet{{name: "private", gateway: gatewayIP}, bridgeNet}
)

// fastPathRun is a running sandbox with the helper and its published ports.
type fastPathRun struct {
	p                                     *proc
	net                                   fastPathNet
	u                                     *user  // on a shared network: its own daemon
	echo, loOnly, serverHalf, closed, udp string // host ports
}

// startFastPath starts the helper in a sandbox on network n with the ports
// published on base+1..base+5 (all host addresses).
func startFastPath(t *testing.T, n fastPathNet, base int, env ...string) *fastPathRun {
	t.Helper()
	requireNetnsRun(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &fastPathRun{
		net:  n,
		echo: fmt.Sprint(base + 1), loOnly: fmt.Sprint(base + 2), serverHalf: fmt.Sprint(base + 3),
		closed: fmt.Sprint(base + 4), udp: fmt.Sprint(base + 5),
	}
	args := []string{
		"--network", n.name,
		"-p", fmt.Sprintf("%s:%d", r.echo, fpEcho), "-p", fmt.Sprintf("%s:%d", r.loOnly, fpLoOnly),
		"-p", fmt.Sprintf("%s:%d", r.serverHalf, fpServerHalf), "-p", fmt.Sprintf("%s:%d", r.closed, fpClosed),
		"-p", fmt.Sprintf("%s:%d/udp", r.udp, fpUDP),
		"--", self,
	}
	if n.shared {
		r.u = newUser(t)
		env = append(append([]string{}, r.u.env...), env...)
	}
	env = append(env, fastPathHelperEnv+"=1")
	r.p = startCmd(t, cmdOpts{env: env}, netnsRun, args...)
	r.p.waitReady()
	return r
}

// fastPathMode is one forwarding path for loopback clients.
type fastPathMode struct {
	name string
	env  []string
	// fast: loopback TCP clients are connected from inside the sandbox, so
	// they appear there as 127.0.0.1 and reach a server bound to its
	// 127.0.0.1 only; on the gVisor path they appear as the gateway and
	// reach the sandbox's eth0 address only.
	fast bool
}

var fastPathModes = []fastPathMode{
	{name: "fast path", fast: true},
	{name: "gVisor path", env: []string{"NETNS_RUN_LOOPBACK_FASTPATH=0"}},
}

// from is where a loopback TCP client appears in the sandbox.
func (m fastPathMode) from(n fastPathNet) string {
	if m.fast {
		return loopbackIP
	}
	return n.gateway
}

// TestFastPath runs one suite against each path of loopback clients on
// each kind of network, with world clients checked alongside (they always
// take the gVisor path).
func TestFastPath(t *testing.T) {
	requireLauncher(t)
	for i, n := range fastPathNets {
		for j, mode := range fastPathModes {
			t.Run(n.name+" "+mode.name, func(t *testing.T) {
				r := startFastPath(t, n, 18300+100*i+20*j, mode.env...)
				fastPathSuite(t, r, mode)
				r.p.stop()
			})
		}
	}
}

func fastPathSuite(t *testing.T, r *fastPathRun, mode fastPathMode) {
	from := mode.from(r.net)
	fromLo := regexp.MustCompile(`^from ` + regexp.QuoteMeta(from) + `:\d+\n`)
	fromGWUDP := regexp.MustCompile(`^from ` + regexp.QuoteMeta(r.net.gateway) + `:\d+ `)
	lo := func(port string) string { return "127.0.0.1:" + port }

	t.Run("loopback client, echo with client half-close", func(t *testing.T) {
		got := tcpExchange(t, "tcp4", lo(r.echo), "ping", 10*time.Second)
		if !fromLo.MatchString(got) || !strings.HasSuffix(got, "\nping") {
			t.Errorf("through %s: %q; want \"from %s:PORT\\nping\"", lo(r.echo), got, from)
		}
	})

	t.Run("IPv6 loopback client", func(t *testing.T) {
		if !hasIPv6Loopback() {
			t.Skip("no ::1 in the host namespace")
		}
		got := tcpExchange(t, "tcp6", "[::1]:"+r.echo, "ping6", 10*time.Second)
		if !fromLo.MatchString(got) || !strings.HasSuffix(got, "\nping6") {
			t.Errorf("through [::1]:%s: %q; want \"from %s:PORT\\nping6\"", r.echo, got, from)
		}
	})

	t.Run("server half-closes first", func(t *testing.T) {
		c, err := net.DialTimeout("tcp4", lo(r.serverHalf), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		b, err := io.ReadAll(c) // EOF: the server's half-close came through
		if err != nil || !fromLo.MatchString(string(b)) || !strings.HasSuffix(string(b), "\nbye") {
			t.Fatalf("read %q, %v; want the banner and \"bye\", then EOF", b, err)
		}
		if _, err := io.WriteString(c, "after-eof"); err != nil {
			t.Fatalf("write after the server's half-close: %v", err)
		}
		c.(*net.TCPConn).CloseWrite()
		r.p.waitLine("stdout", regexp.MustCompile(`^server-first got "after-eof", <nil>$`))
	})

	t.Run("refused port closes the client promptly", func(t *testing.T) {
		c, err := net.DialTimeout("tcp4", lo(r.closed), 5*time.Second)
		if err != nil {
			t.Fatal(err) // the host listener accepts; the sandbox refuses
		}
		defer c.Close()
		start := time.Now()
		c.SetDeadline(start.Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if el := time.Since(start); el > 2*time.Second || len(b) > 0 {
			t.Errorf("a port nobody serves: read %q, %v after %v; want the connection ended within 2s", b, err, el)
		}
	})

	t.Run("16 MiB each way intact", func(t *testing.T) {
		const n = 16 << 20
		data := make([]byte, n)
		rand.Read(data)
		c, err := net.DialTimeout("tcp4", lo(r.echo), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			c.(*net.TCPConn).CloseWrite()
			werr <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read: %v after %d bytes", err, len(got))
		}
		if err := <-werr; err != nil {
			t.Fatalf("write: %v", err)
		}
		banner, echo, _ := bytes.Cut(got, []byte("\n"))
		if !fromLo.Match(append(banner, '\n')) {
			t.Errorf("banner %q", banner)
		}
		if len(echo) != n || sha256.Sum256(echo) != sha256.Sum256(data) {
			t.Fatalf("sent %d bytes (sha256 %x), the echo has %d (sha256 %x)", n, sha256.Sum256(data), len(echo), sha256.Sum256(echo))
		}
	})

	t.Run("server bound to the sandbox's 127.0.0.1 only", func(t *testing.T) {
		c, err := net.DialTimeout("tcp4", lo(r.loOnly), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "lo")
		c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		got := string(b)
		if mode.fast && (!fromLo.MatchString(got) || !strings.HasSuffix(got, "\nlo")) {
			t.Errorf("through %s: %q; want the loopback-only server (\"from %s:PORT\\nlo\")", lo(r.loOnly), got, from)
		}
		if !mode.fast && got != "" {
			t.Errorf("through %s: %q; the gVisor path dials eth0 and must not reach a server on 127.0.0.1 only", lo(r.loOnly), got)
		}
		// A world client never reaches it.
		resp := worldDial(t, "tcp", hostIP+":"+r.loOnly, "x", 3*time.Second)
		if strings.Contains(resp.Reply, "from ") {
			t.Errorf("a world client reached the sandbox's loopback-only server: %q", resp.Reply)
		}
	})

	t.Run("loopback client udp (always through gVisor)", func(t *testing.T) {
		got := udpExchange(t, "udp4", lo(r.udp), "q", 10*time.Second)
		if !fromGWUDP.MatchString(got) || !strings.HasSuffix(got, " q") {
			t.Errorf("through %s/udp: %q; want \"from %s:PORT q\"", lo(r.udp), got, r.net.gateway)
		}
	})

	t.Run("world client keeps its address", func(t *testing.T) {
		resp := worldDial(t, "tcp", hostIP+":"+r.echo, "hello", 10*time.Second)
		if resp.Error != "" || !strings.HasPrefix(resp.Reply, "from "+worldIP+":") || !strings.HasSuffix(resp.Reply, "\nhello") {
			t.Errorf("world client: reply %q, error %q; want \"from %s:PORT\\nhello\"", resp.Reply, resp.Error, worldIP)
		}
		resp = worldDial(t, "udp", hostIP+":"+r.udp, "wq", 10*time.Second)
		if resp.Error != "" || !strings.HasPrefix(resp.Reply, "from "+worldIP+":") {
			t.Errorf("world client over UDP: reply %q, error %q; want \"from %s:PORT wq\"", resp.Reply, resp.Error, worldIP)
		}
	})
}

// countFDs counts the open descriptors of pid; -1 if they cannot be read.
func countFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// exchangeErr is tcpExchange for goroutines: dial, send, half-close, read
// to EOF.
func exchangeErr(addr, send string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, send); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// burst runs send for 0..n-1, conc at a time, and returns its errors.
func burst(n, conc int, send func(i int) (string, error)) []error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, conc)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := send(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// TestFastPathNoLeaks: many loopback connections through the fast path,
// served and refused, leave no descriptor behind in the process that
// relays them (netns-run on a private network, the network daemon on a
// shared one) or in the sandbox agent (a relay or dial goroutine that
// never ended would hold its sockets).
func TestFastPathNoLeaks(t *testing.T) {
	requireLauncher(t)
	for i, n := range fastPathNets {
		t.Run(n.name, func(t *testing.T) { fastPathNoLeaks(t, startFastPath(t, n, 18360+100*i)) })
	}
}

func fastPathNoLeaks(t *testing.T, r *fastPathRun) {
	relayer, what := r.p.pid(), "netns-run"
	if r.net.shared {
		relayer, what = findDaemon(t, r.u), "the network daemon"
	}
	var agent int
	for _, s := range descendants(r.p.pid()) {
		if s.ppid == r.p.pid() {
			agent = s.pid
		}
	}
	echo := "127.0.0.1:" + r.echo
	work := func(n int) {
		errs := burst(n, 16, func(i int) (string, error) {
			if i%10 == 9 { // a refused one now and then
				got, _ := exchangeErr("127.0.0.1:"+r.closed, "x") // EOF or a reset
				if got != "" {
					return got, fmt.Errorf("a refused port answered %q", got)
				}
				return got, nil
			}
			msg := fmt.Sprint("m", i)
			got, err := exchangeErr(echo, msg)
			if err == nil && !strings.HasSuffix(got, "\n"+msg) {
				err = fmt.Errorf("connection %d: %q", i, got)
			}
			return got, err
		})
		for i, err := range errs {
			if i < 5 {
				t.Error(err)
			}
		}
		if len(errs) > 5 {
			t.Errorf("... %d failed connections in all", len(errs))
		}
	}
	// Warm up: the pools (pipes kept for reuse, the dial pool of
	// unconnected sockets) fill to their working size.
	work(64)
	settle := func() (int, int) {
		time.Sleep(300 * time.Millisecond)
		return countFDs(relayer), countFDs(agent)
	}
	relBefore, agentBefore := settle()
	if relBefore < 0 {
		t.Fatalf("cannot read /proc/%d/fd of %s", relayer, what)
	}
	work(600)
	// The dial pool refills in batches: it may hold up to 24 sockets more
	// or fewer than before; a leak of one per connection shows as hundreds.
	const slack = 32
	var relAfter, agentAfter int
	for deadline := time.Now().Add(10 * time.Second); ; {
		relAfter, agentAfter = settle()
		if relAfter <= relBefore+slack && (agentBefore < 0 || agentAfter <= agentBefore+2) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%s (pid %d) descriptors: %d before, %d after 600 connections; the agent (pid %d): %d, %d",
		what, relayer, relBefore, relAfter, agent, agentBefore, agentAfter)
	if relAfter > relBefore+slack {
		t.Errorf("%s holds %d descriptors after 600 connections, %d before", what, relAfter, relBefore)
	}
	if agentBefore < 0 {
		t.Logf("the agent's descriptors cannot be read (pid %d)", agent)
	} else if agentAfter > agentBefore+2 {
		t.Errorf("the sandbox agent holds %d descriptors after 600 connections, %d before", agentAfter, agentBefore)
	}
	r.p.stop()
}
