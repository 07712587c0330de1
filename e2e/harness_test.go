package e2e

import (
	"context"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestHarness checks the launcher's promises, without netns-run: the tests
// run unprivileged in a host namespace that holds only lo and world0, and
// the world answers.
func TestHarness(t *testing.T) {
	requireLauncher(t)
	t.Run("unprivileged", func(t *testing.T) {
		if os.Getuid() == 0 || os.Geteuid() == 0 {
			t.Fatalf("tests run as uid %d (euid %d): want a non-root uid", os.Getuid(), os.Geteuid())
		}
		lines, err := readLines("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, l := range lines {
			for _, c := range []string{"CapInh:", "CapPrm:", "CapEff:", "CapAmb:"} {
				if v, ok := strings.CutPrefix(l, c); ok {
					seen++
					if strings.Trim(strings.TrimSpace(v), "0") != "" {
						t.Errorf("%s %s: want no capabilities", c, strings.TrimSpace(v))
					}
				}
			}
		}
		if seen != 4 {
			t.Errorf("found %d of the 4 capability sets in /proc/self/status", seen)
		}
		if os.Getppid() != 1 {
			t.Errorf("parent pid %d: want 1 (the launcher, as init of a pid namespace of its own)", os.Getppid())
		}
	})

	t.Run("host netns holds only lo and world0", func(t *testing.T) {
		ifs, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, i := range ifs {
			names = append(names, i.Name)
			if i.Flags&net.FlagUp == 0 {
				t.Errorf("%s is down", i.Name)
			}
		}
		sort.Strings(names)
		if strings.Join(names, " ") != "lo world0" {
			t.Fatalf("interfaces %v: want exactly [lo world0]", names)
		}
		w, _ := net.InterfaceByName("world0")
		addrs, _ := w.Addrs()
		var v4 []string
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				v4 = append(v4, ipn.String())
			}
		}
		if strings.Join(v4, " ") != hostIP+"/24" {
			t.Errorf("world0 IPv4 addresses %v: want [%s/24]", v4, hostIP)
		}
		routes, err := readLines("/proc/net/route")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes[1:] {
			f := strings.Fields(r)
			if len(f) > 7 && f[1] == "00000000" && f[7] == "00000000" {
				t.Errorf("the host namespace has a default route: %s", r)
			}
		}
		if routes6, err := readLines("/proc/net/ipv6_route"); err == nil {
			for _, r := range routes6 {
				f := strings.Fields(r)
				if len(f) > 9 && f[0] == strings.Repeat("0", 32) && f[1] == "00" && f[9] != "lo" {
					t.Errorf("the host namespace has an IPv6 default route: %s", r)
				}
			}
		}
	})

	t.Run("probe runs", func(t *testing.T) {
		r := runCmd(t, cmdOpts{}, probe, "exit", "3")
		wantExit(t, r, 3, "probe exit 3")
		if _, err := os.Stat(netnsRun); err != nil {
			t.Logf("note: %v (the netns-run tests will fail)", err)
		}
	})

	t.Run("world whoami tcp", func(t *testing.T) {
		got := tcpExchange(t, "tcp4", whoamiAddr, "hi", 5*time.Second)
		if !regexp.MustCompile(`^from 198\.51\.100\.1:\d+\nhi$`).MatchString(got) {
			t.Fatalf("whoami over TCP from the host: got %q, want \"from %s:PORT\\nhi\"", got, hostIP)
		}
	})

	t.Run("world whoami udp", func(t *testing.T) {
		got := udpExchange(t, "udp4", whoamiAddr, "hi", 5*time.Second)
		if !regexp.MustCompile(`^from 198\.51\.100\.1:\d+ hi$`).MatchString(got) {
			t.Fatalf("whoami over UDP from the host: got %q, want \"from %s:PORT hi\"", got, hostIP)
		}
	})

	t.Run("world dns", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion(worldName+".", dns.TypeA)
		c := &dns.Client{Timeout: 3 * time.Second}
		in, _, err := c.Exchange(m, worldIP+":53")
		if err != nil {
			t.Fatalf("query %s at %s:53: %v", worldName, worldIP, err)
		}
		if len(in.Answer) != 1 || in.Answer[0].(*dns.A).A.String() != worldIP {
			t.Fatalf("answer for %s: %v, want one A %s", worldName, in.Answer, worldIP)
		}
		if hostDNS == "" {
			t.Skip("the launcher could not give the host a hermetic /etc/resolv.conf")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r := &net.Resolver{PreferGo: true}
		addrs, err := r.LookupHost(ctx, worldName)
		if err != nil || len(addrs) != 1 || addrs[0] != worldIP {
			t.Fatalf("the host's resolver (/etc/resolv.conf) for %s: %v %v, want [%s]", worldName, addrs, err, worldIP)
		}
	})

	t.Run("control api tcp", func(t *testing.T) {
		l := serveWhoamiTCP(t, hostIP+":0")
		resp := worldDial(t, "tcp", l.Addr().String(), "hello", 5*time.Second)
		if resp.Error != "" || !regexp.MustCompile(`^from 198\.51\.100\.2:\d+\nhello$`).MatchString(resp.Reply) {
			t.Fatalf("world -> host TCP: reply %q, error %q; want \"from %s:PORT\\nhello\"", resp.Reply, resp.Error, worldIP)
		}
	})

	t.Run("control api udp", func(t *testing.T) {
		pc := serveWhoamiUDP(t, hostIP+":0")
		resp := worldDial(t, "udp", pc.LocalAddr().String(), "hello", 5*time.Second)
		if resp.Error != "" || !regexp.MustCompile(`^from 198\.51\.100\.2:\d+ hello$`).MatchString(resp.Reply) {
			t.Fatalf("world -> host UDP: reply %q, error %q; want \"from %s:PORT hello\"", resp.Reply, resp.Error, worldIP)
		}
	})

	t.Run("control api refuses other networks", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := world().Dial(ctx, dialReq("tcp", "127.0.0.1:80"))
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Fatalf("dial 127.0.0.1:80 through the world: got %v, want a 400 refusal", err)
		}
	})
}
