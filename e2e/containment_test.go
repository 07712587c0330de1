package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHostLoopbackSpelledEveryWay: without --host-loopback, no spelling
// of the host's loopback reaches it from a sandbox, over TCP or UDP: the
// gateway's and the resolver's every address (IPv4, fd00::2 and fd00::3,
// the gateway's link-local address), v4-mapped forms of them and of
// 127.0.0.1, and the limited broadcast; on the private network and on the
// shared bridge. The host's listeners on 127.0.0.1 and ::1 count what
// reaches them, which must be nothing; the same probe reaches the world,
// so the tries themselves work.
func TestHostLoopbackSpelledEveryWay(t *testing.T) {
	requireLauncher(t)
	const port = "18210"
	var reached atomic.Int64
	for _, a := range []string{"127.0.0.1:" + port, "[::1]:" + port} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				reached.Add(1)
				c.Close()
			}
		}()
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
				reached.Add(1)
			}
		}()
	}
	u := newUser(t)
	for _, c := range []struct {
		network string
		targets []string
	}{
		{"private", []string{"10.0.2.2", "10.0.2.3", "[fd00::2]", "[fd00::3]", "[fe80::42:aff:fe00:202%eth0]",
			"[::ffff:10.0.2.2]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "255.255.255.255"}},
		{"bridge", []string{"172.17.0.1", "[::ffff:172.17.0.1]", "[::ffff:127.0.0.1]", "255.255.255.255"}},
	} {
		var script strings.Builder
		fmt.Fprintf(&script, "P=%s\n$P tcp -timeout 5s %s control; echo\n", probe, whoamiAddr)
		for _, target := range c.targets {
			fmt.Fprintf(&script, "$P tcp -timeout 2s %s:%s tcp-reached >/dev/null 2>&1 && echo \"tcp %s answered\"\n", target, port, target)
			fmt.Fprintf(&script, "$P udp -timeout 1s %s:%s udp-reached >/dev/null 2>&1 && echo \"udp %s answered\"\n", target, port, target)
		}
		script.WriteString("true\n")
		r := u.nr("run", "--network", c.network, "--", "/bin/sh", "-c", script.String())
		wantExit(t, r, 0, "the tries on "+c.network)
		if !strings.Contains(r.stdout, "control") {
			t.Errorf("on %s, the control connection to the world failed, so the tries prove nothing:\n%s", c.network, r)
		}
		if strings.Contains(r.stdout, "answered") {
			t.Errorf("on %s, a spelling of the host's loopback answered:\n%s", c.network, r)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the host's loopback listeners got %d connection(s) or datagram(s) from sandboxes", n)
	}
}
