package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/netns-run/netns-run/e2e/internal/whoami"
)

// TestSandboxEth0 checks the sandbox's interface: address, MAC, MTU, the
// default route via the gateway, lo up.
func TestSandboxEth0(t *testing.T) {
	requireLauncher(t)
	check := func(t *testing.T, flags []string, mtu int) {
		r := runNR(t, sandboxed(flags, "ifinfo", "eth0")...)
		wantExit(t, r, 0, "probe ifinfo in the sandbox")
		info := map[string][]string{}
		for _, l := range nonEmptyLines(r.stdout) {
			k, v, _ := strings.Cut(l, " ")
			info[k] = append(info[k], v)
		}
		var v4 []string
		for _, a := range info["addr"] {
			if ip, _, err := net.ParseCIDR(a); err == nil && ip.To4() != nil {
				v4 = append(v4, a)
			}
		}
		want := map[string]string{
			"mac":     sandboxMAC,
			"mtu":     fmt.Sprint(mtu),
			"up":      "true",
			"lo":      "up",
			"gateway": gatewayIP,
		}
		if strings.Join(v4, " ") != sandboxIP+"/24" {
			t.Errorf("eth0 IPv4 addresses %v: want [%s/24]", v4, sandboxIP)
		}
		for k, w := range want {
			if got := strings.Join(info[k], " "); got != w {
				t.Errorf("%s: got %q, want %q", k, got, w)
			}
		}
		if t.Failed() {
			t.Logf("probe ifinfo said:\n%s", indent(r.stdout))
		}
	}
	t.Run("defaults", func(t *testing.T) { check(t, nil, defaultMTU) })
	t.Run("--mtu 1500", func(t *testing.T) { check(t, []string{"--mtu", "1500"}, 1500) })
}

// TestOutbound checks that the sandbox reaches a world host over TCP and UDP
// and that the world host sees the host's address (re-originated traffic).
func TestOutbound(t *testing.T) {
	requireLauncher(t)
	t.Run("tcp", func(t *testing.T) {
		r := runNR(t, sandboxed(nil, "tcp", whoamiAddr, "hello-tcp")...)
		wantExit(t, r, 0, "probe tcp to the world")
		if !regexp.MustCompile(`^from 198\.51\.100\.1:\d+\nhello-tcp$`).MatchString(r.stdout) {
			t.Fatalf("world whoami over TCP said %q; want \"from %s:PORT\\nhello-tcp\" (the host's address)", r.stdout, hostIP)
		}
		wantLocal(t, r, sandboxIP)
	})
	t.Run("udp", func(t *testing.T) {
		r := runNR(t, sandboxed(nil, "udp", whoamiAddr, "hello-udp")...)
		wantExit(t, r, 0, "probe udp to the world")
		if !regexp.MustCompile(`^from 198\.51\.100\.1:\d+ hello-udp\n$`).MatchString(r.stdout) {
			t.Fatalf("world whoami over UDP said %q; want \"from %s:PORT hello-udp\" (the host's address)", r.stdout, hostIP)
		}
		wantLocal(t, r, sandboxIP)
	})
	t.Run("tcp 4MiB echo", func(t *testing.T) {
		const n = 4 << 20
		r := runNR(t, sandboxed(nil, "tcp", "-timeout", "20s", "-bytes", fmt.Sprint(n), whoamiAddr)...)
		wantExit(t, r, 0, "4 MiB through the world's TCP echo")
		if !strings.Contains(r.stdout, fmt.Sprintf("echoed %d bytes", n)) {
			t.Fatalf("want the 4 MiB echoed intact:\n%s", r)
		}
		wantLocal(t, r, sandboxIP)
	})
}

// wantLocal checks that a probe client's own address (its "local IP:PORT"
// line on stderr) is ip: that it really ran in the sandbox.
func wantLocal(t *testing.T, r result, ip string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)^local ` + regexp.QuoteMeta(ip) + `:\d+$`).MatchString(r.stderr) {
		t.Errorf("the probe's own address should be %s (in the sandbox):\n%s", ip, r)
	}
}

// TestPingGateway pings the gateway from the sandbox with busybox. Optional:
// it skips when busybox is missing or cannot ping at all inside a sandbox.
func TestPingGateway(t *testing.T) {
	requireLauncher(t)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed")
	}
	requireNetnsRun(t)
	pre := runNR(t, "--", bb, "ping", "-c", "1", "-W", "2", "127.0.0.1")
	if pre.code != 0 {
		t.Skipf("busybox ping does not work even on the sandbox's loopback, so the gateway cannot be tested this way:\n%s", pre)
	}
	r := runNR(t, "--", bb, "ping", "-c", "3", "-W", "2", "-w", "10", gatewayIP)
	wantExit(t, r, 0, "busybox ping "+gatewayIP+" in the sandbox")
	if !strings.Contains(r.stdout, "from "+gatewayIP) {
		t.Errorf("no reply from %s in:\n%s", gatewayIP, r)
	}
}

// TestDNS checks the built-in resolver (10.0.2.3) and the resolv.conf flags.
func TestDNS(t *testing.T) {
	requireLauncher(t)
	const name, addr = "only-fake.e2e.test", "198.51.100.77"
	records := map[string][]string{name: {addr}}

	t.Run("resolv.conf names the built-in resolver", func(t *testing.T) {
		r := runNR(t, sandboxed(nil, "cat", "/etc/resolv.conf")...)
		wantExit(t, r, 0, "cat /etc/resolv.conf in the sandbox")
		var ns []string
		for _, l := range nonEmptyLines(r.stdout) {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "nameserver" {
				ns = append(ns, f[1])
			}
		}
		if want := resolverIP + " " + resolverIP6; strings.Join(ns, " ") != want {
			t.Fatalf("nameservers %v: want [%s]\n%s", ns, want, r.stdout)
		}
	})

	t.Run("--dns-upstream", func(t *testing.T) {
		up, srv := startFakeDNS(t, records)
		r := runNR(t, sandboxed([]string{"--dns-upstream", up}, "resolve", name)...)
		wantExit(t, r, 0, "resolving "+name+" through --dns-upstream "+up)
		if r.stdout != addr+"\n" {
			t.Fatalf("%s resolved to %q, want %s", name, r.stdout, addr)
		}
		if srv.Queries() == 0 {
			t.Fatal("the fake upstream got no query")
		}
	})

	t.Run("--dns-upstream unknown name", func(t *testing.T) {
		up, _ := startFakeDNS(t, records)
		r := runNR(t, sandboxed([]string{"--dns-upstream", up}, "resolve", "not-there.e2e.test")...)
		if r.code == 0 {
			t.Fatalf("a name the upstream does not know resolved:\n%s", r)
		}
		if !strings.Contains(r.stderr, "no such host") {
			t.Errorf("want NXDOMAIN (\"no such host\") passed through, got:\n%s", r)
		}
	})

	t.Run("--dns-upstream falls back past a dead upstream", func(t *testing.T) {
		up, srv := startFakeDNS(t, records)
		dead := fmt.Sprintf("127.0.0.1:%d", closedPort(t))
		r := runNRWith(t, cmdOpts{timeout: 45 * time.Second},
			sandboxed([]string{"--dns-upstream", dead, "--dns-upstream", up}, "resolve", "-timeout", "30s", name)...)
		wantExit(t, r, 0, fmt.Sprintf("resolving %s with upstreams %s (closed) then %s", name, dead, up))
		if r.stdout != addr+"\n" {
			t.Fatalf("%s resolved to %q, want %s", name, r.stdout, addr)
		}
		if srv.Queries() == 0 {
			t.Fatal("the second upstream got no query")
		}
	})

	t.Run("default upstream from the host's resolv.conf", func(t *testing.T) {
		if hostDNS == "" {
			t.Skip("the launcher could not give the host a hermetic /etc/resolv.conf naming the world's DNS server")
		}
		r := runNR(t, "--", "/bin/sh", "-c",
			fmt.Sprintf("%s cat /etc/resolv.conf && echo === && exec %s resolve %s", probe, probe, worldName))
		wantExit(t, r, 0, "resolving "+worldName+" (known to "+hostDNS+", the host's nameserver)")
		conf, addrs, _ := strings.Cut(r.stdout, "===\n")
		if !regexp.MustCompile(`(?m)^nameserver 10\.0\.2\.3$`).MatchString(conf) || strings.Contains(conf, hostDNS) {
			t.Errorf("the sandbox's resolv.conf should name only the built-in resolver %s:\n%s", resolverIP, conf)
		}
		if addrs != worldIP+"\n" {
			t.Fatalf("%s resolved to %q, want %s", worldName, addrs, worldIP)
		}
	})

	t.Run("--dns --dns-search --dns-option", func(t *testing.T) {
		before, _ := os.ReadFile("/etc/resolv.conf")
		r := runNR(t, sandboxed([]string{
			"--dns", "198.51.100.53", "--dns", "198.51.100.54",
			"--dns-search", "e2e.test", "--dns-search", "example.test",
			"--dns-option", "ndots:2", "--dns-option", "timeout:1",
		}, "cat", "/etc/resolv.conf")...)
		wantExit(t, r, 0, "cat /etc/resolv.conf in the sandbox")
		var ns, search, opts []string
		for _, l := range nonEmptyLines(r.stdout) {
			f := strings.Fields(l)
			switch {
			case len(f) < 2:
			case f[0] == "nameserver":
				ns = append(ns, f[1])
			case f[0] == "search":
				search = append(search, f[1:]...)
			case f[0] == "options":
				opts = append(opts, f[1:]...)
			}
		}
		check := func(what string, got []string, want string) {
			if strings.Join(got, " ") != want {
				t.Errorf("%s: got %v, want [%s]", what, got, want)
			}
		}
		check("nameservers", ns, "198.51.100.53 198.51.100.54")
		check("search", search, "e2e.test example.test")
		check("options", opts, "ndots:2 timeout:1")
		if t.Failed() {
			t.Logf("the sandbox's resolv.conf:\n%s", indent(r.stdout))
		}
		after, _ := os.ReadFile("/etc/resolv.conf")
		if string(before) != string(after) {
			t.Errorf("the host's /etc/resolv.conf changed:\n%s", after)
		}
	})
}

// stop ends a long-running netns-run with SIGTERM (forwarded to its
// command) and waits for it.
func (p *proc) stop() result {
	p.t.Helper()
	if !p.exited() {
		_ = syscall.Kill(p.pid(), syscall.SIGTERM)
	}
	return p.wait(15 * time.Second)
}

var autoRE = regexp.MustCompile(`^netns-run: published 0\.0\.0\.0:(\d+)->(\d+)/(tcp|udp)$`)

// TestPublish checks published ports, TCP and UDP, from a client on the
// host's loopback (over TCP served by the loopback fast path, so seen in
// the sandbox as its own 127.0.0.1, see fastpath_test.go; over UDP seen as
// the gateway) and from a world client (seen with its own address).
func TestPublish(t *testing.T) {
	requireLauncher(t)
	fromLo := regexp.MustCompile(`^from 127\.0\.0\.1:\d+\n`)
	fromWorld := regexp.MustCompile(`^from 198\.51\.100\.2:\d+\n`)
	fromGWUDP := regexp.MustCompile(`^from 10\.0\.2\.2:\d+ `)
	fromWorldUDP := regexp.MustCompile(`^from 198\.51\.100\.2:\d+ `)

	t.Run("tcp 127.0.0.1:18080:80 loopback client", func(t *testing.T) {
		p := startNR(t, sandboxed([]string{"-p", "127.0.0.1:18080:80"}, "serve-tcp", "80")...)
		p.waitReady()
		got := tcpExchange(t, "tcp4", "127.0.0.1:18080", "ping", 10*time.Second)
		if !fromLo.MatchString(got) || !strings.HasSuffix(got, "\nping") {
			t.Errorf("through 127.0.0.1:18080 the sandbox said %q; want \"from %s:PORT\\nping\"", got, loopbackIP)
		}
		// Published on 127.0.0.1 only: the world must not reach it.
		resp := worldDial(t, "tcp", hostIP+":18080", "x", 2*time.Second)
		if resp.Error == "" {
			t.Errorf("a port published on 127.0.0.1 answered the world: %q", resp.Reply)
		}
		p.stop()
	})

	t.Run("tcp 18081:80 world and loopback clients", func(t *testing.T) {
		p := startNR(t, sandboxed([]string{"-p", "18081:80"}, "serve-tcp", "80")...)
		p.waitReady()
		resp := worldDial(t, "tcp", hostIP+":18081", "hello", 10*time.Second)
		if resp.Error != "" || !fromWorld.MatchString(resp.Reply) || !strings.HasSuffix(resp.Reply, "\nhello") {
			t.Errorf("world client through %s:18081: reply %q, error %q; want \"from %s:PORT\\nhello\" (the client's own address)",
				hostIP, resp.Reply, resp.Error, worldIP)
		}
		got := tcpExchange(t, "tcp4", "127.0.0.1:18081", "ping", 10*time.Second)
		if !fromLo.MatchString(got) {
			t.Errorf("loopback client through 127.0.0.1:18081: %q; want \"from %s:PORT\"", got, loopbackIP)
		}
		if hasIPv6Loopback() {
			got := tcpExchange(t, "tcp6", "[::1]:18081", "ping6", 10*time.Second)
			if !fromLo.MatchString(got) || !strings.HasSuffix(got, "\nping6") {
				t.Errorf("IPv6 loopback client through [::1]:18081 (empty HOST_IP = IPv4 and IPv6): %q; want \"from %s:PORT\"", got, loopbackIP)
			}
		} else {
			t.Log("no ::1 in the host namespace: IPv6 publishing not checked")
		}
		p.stop()
	})

	t.Run("udp 127.0.0.1:18053:53 loopback client", func(t *testing.T) {
		p := startNR(t, sandboxed([]string{"-p", "127.0.0.1:18053:53/udp"}, "serve-udp", "53")...)
		p.waitReady()
		got := udpExchange(t, "udp4", "127.0.0.1:18053", "q1", 10*time.Second)
		if !fromGWUDP.MatchString(got) || !strings.HasSuffix(got, " q1") {
			t.Errorf("through 127.0.0.1:18053/udp the sandbox said %q; want \"from %s:PORT q1\"", got, gatewayIP)
		}
		p.stop()
	})

	t.Run("udp 18054:53 world client", func(t *testing.T) {
		p := startNR(t, sandboxed([]string{"-p", "18054:53/udp"}, "serve-udp", "53")...)
		p.waitReady()
		resp := worldDial(t, "udp", hostIP+":18054", "q2", 10*time.Second)
		if resp.Error != "" || !fromWorldUDP.MatchString(resp.Reply) || !strings.HasSuffix(resp.Reply, " q2") {
			t.Errorf("world client through %s:18054/udp: reply %q, error %q; want \"from %s:PORT q2\"", hostIP, resp.Reply, resp.Error, worldIP)
		}
		got := udpExchange(t, "udp4", "127.0.0.1:18054", "q3", 10*time.Second)
		if !fromGWUDP.MatchString(got) {
			t.Errorf("loopback client through 127.0.0.1:18054/udp: %q; want \"from %s:PORT q3\"", got, gatewayIP)
		}
		p.stop()
	})

	t.Run("port range 127.0.0.1:18090-18091:8090-8091", func(t *testing.T) {
		p := startNR(t, sandboxed([]string{"-p", "127.0.0.1:18090-18091:8090-8091"}, "serve-tcp", "8090", "8091")...)
		p.waitReady()
		for _, port := range []string{"18090", "18091"} {
			got := tcpExchange(t, "tcp4", "127.0.0.1:"+port, "r"+port, 10*time.Second)
			if !fromLo.MatchString(got) || !strings.HasSuffix(got, "\nr"+port) {
				t.Errorf("through 127.0.0.1:%s: %q", port, got)
			}
		}
		p.stop()
	})

	for _, proto := range []string{"tcp", "udp"} {
		t.Run("auto host port "+proto, func(t *testing.T) {
			spec, serve := "80", []string{"serve-tcp", "80"}
			if proto == "udp" {
				spec, serve = "53/udp", []string{"serve-udp", "53"}
			}
			p := startNR(t, sandboxed([]string{"-p", spec}, serve...)...)
			m := p.waitLine("stderr", autoRE)
			p.waitReady()
			port, cport, gotProto := m[1], m[2], m[3]
			if cport != strings.TrimSuffix(spec, "/udp") || gotProto != proto {
				t.Errorf("published line %q: want ->%s/%s", m[0], strings.TrimSuffix(spec, "/udp"), proto)
			}
			if proto == "tcp" {
				got := tcpExchange(t, "tcp4", "127.0.0.1:"+port, "auto", 10*time.Second)
				if !fromLo.MatchString(got) || !strings.HasSuffix(got, "\nauto") {
					t.Errorf("through the auto port 127.0.0.1:%s: %q", port, got)
				}
				resp := worldDial(t, "tcp", hostIP+":"+port, "auto", 10*time.Second)
				if resp.Error != "" || !fromWorld.MatchString(resp.Reply) {
					t.Errorf("world client through the auto port %s:%s: reply %q, error %q", hostIP, port, resp.Reply, resp.Error)
				}
			} else {
				got := udpExchange(t, "udp4", "127.0.0.1:"+port, "auto", 10*time.Second)
				if !fromGWUDP.MatchString(got) || !strings.HasSuffix(got, " auto") {
					t.Errorf("through the auto port 127.0.0.1:%s/udp: %q", port, got)
				}
			}
			p.stop()
		})
	}
}

// loopbackIP is where a TCP client on the host's loopback appears in the
// sandbox: the loopback fast path connects from the sandbox's own.
const loopbackIP = "127.0.0.1"

func hasIPv6Loopback() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestHostLoopback checks that GATEWAY:PORT does not reach the host's
// 127.0.0.1:PORT unless --host-loopback, over TCP and UDP.
func TestHostLoopback(t *testing.T) {
	requireLauncher(t)
	const port = "18200"
	raw, err := net.Listen("tcp4", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: raw}
	go func() { _ = whoami.ServeTCP(cl) }()
	t.Cleanup(func() { raw.Close() })
	serveWhoamiUDP(t, "127.0.0.1:"+port)
	target := gatewayIP + ":" + port

	t.Run("closed by default tcp", func(t *testing.T) {
		r := runNR(t, sandboxed(nil, "tcp", "-timeout", "3s", target, "x")...)
		if r.code == 0 || strings.Contains(r.stdout, "from ") {
			t.Errorf("the sandbox reached the host's 127.0.0.1:%s through %s without --host-loopback:\n%s", port, target, r)
		}
		if n := cl.n.Load(); n != 0 {
			t.Errorf("the host's 127.0.0.1:%s accepted %d connection(s) without --host-loopback", port, n)
		}
	})
	t.Run("closed by default udp", func(t *testing.T) {
		r := runNR(t, sandboxed(nil, "udp", "-timeout", "3s", target, "x")...)
		if r.code == 0 || strings.Contains(r.stdout, "from ") {
			t.Errorf("the sandbox reached the host's 127.0.0.1:%s/udp through %s without --host-loopback:\n%s", port, target, r)
		}
	})
	t.Run("--host-loopback tcp", func(t *testing.T) {
		r := runNR(t, sandboxed([]string{"--host-loopback"}, "tcp", target, "x")...)
		wantExit(t, r, 0, "probe tcp "+target+" with --host-loopback")
		if !regexp.MustCompile(`^from 127\.0\.0\.1:\d+\nx$`).MatchString(r.stdout) {
			t.Errorf("the host's 127.0.0.1:%s said %q; want \"from 127.0.0.1:PORT\\nx\"", port, r.stdout)
		}
		wantLocal(t, r, sandboxIP)
	})
	t.Run("--host-loopback udp", func(t *testing.T) {
		r := runNR(t, sandboxed([]string{"--host-loopback"}, "udp", target, "x")...)
		wantExit(t, r, 0, "probe udp "+target+" with --host-loopback")
		if !regexp.MustCompile(`^from 127\.0\.0\.1:\d+ x\n$`).MatchString(r.stdout) {
			t.Errorf("the host's 127.0.0.1:%s/udp said %q; want \"from 127.0.0.1:PORT x\"", port, r.stdout)
		}
		wantLocal(t, r, sandboxIP)
	})
}
