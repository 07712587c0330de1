package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestTCPToHost checks -T (as pasta's -T): the sandbox's 127.0.0.1:PORT
// and [::1]:PORT reach the host's loopback, through sockets the agent made
// inside before the command started, on a private and on a shared network.
func TestTCPToHost(t *testing.T) {
	requireLauncher(t)
	const hostPort = 18300
	serveWhoamiTCP(t, "127.0.0.1:"+strconv.Itoa(hostPort))
	closed := closedPort(t)
	// The host's whoami server tells the client's address: a -T client
	// reaches it from the host's own loopback.
	fromLoopback := regexp.MustCompile(`^from 127\.0\.0\.1:\d+\nx$`)

	t.Run("same port", func(t *testing.T) {
		// The probe dials at once: the port is open before the command runs.
		r := runNR(t, sandboxed([]string{"-T", strconv.Itoa(hostPort)}, "tcp", "127.0.0.1:"+strconv.Itoa(hostPort), "x")...)
		wantExit(t, r, 0, "probe tcp through -T")
		if !fromLoopback.MatchString(r.stdout) {
			t.Errorf("the host's 127.0.0.1:%d said %q; want \"from 127.0.0.1:PORT\\nx\"", hostPort, r.stdout)
		}
	})
	t.Run("another port and ::1", func(t *testing.T) {
		r := runNR(t, sandboxed([]string{"-T", "2000:" + strconv.Itoa(hostPort)}, "tcp", "[::1]:2000", "x")...)
		if strings.Contains(r.stderr, "connect: cannot assign requested address") || strings.Contains(r.stderr, "network is unreachable") {
			t.Skip("no IPv6 on the sandbox's loopback")
		}
		wantExit(t, r, 0, "probe tcp [::1]:2000 through -T 2000:PORT")
		if !fromLoopback.MatchString(r.stdout) {
			t.Errorf("the host's 127.0.0.1:%d said %q; want \"from 127.0.0.1:PORT\\nx\"", hostPort, r.stdout)
		}
	})
	t.Run("bulk both ways", func(t *testing.T) {
		r := runNR(t, sandboxed([]string{"-T", strconv.Itoa(hostPort)}, "tcp", "-bytes", "8000000", "127.0.0.1:"+strconv.Itoa(hostPort))...)
		wantExit(t, r, 0, "8 MB echoed through -T")
		if !strings.Contains(r.stdout, "echoed 8000000 bytes") {
			t.Errorf("want \"echoed 8000000 bytes\", got:\n%s", r)
		}
	})
	t.Run("host port closed", func(t *testing.T) {
		r := runNR(t, sandboxed([]string{"-T", "3000:" + strconv.Itoa(closed)}, "tcp", "-timeout", "5s", "127.0.0.1:3000", "x")...)
		if strings.Contains(r.stdout, "from ") {
			t.Errorf("a -T port whose host port is closed answered:\n%s", r)
		}
	})
	t.Run("only what is forwarded", func(t *testing.T) {
		r := runNR(t, sandboxed([]string{"-T", "3001:" + strconv.Itoa(hostPort)}, "tcp", "-timeout", "3s", "127.0.0.1:"+strconv.Itoa(hostPort), "x")...)
		if r.code == 0 || strings.Contains(r.stdout, "from ") {
			t.Errorf("the sandbox's 127.0.0.1:%d reached the host without -T for it:\n%s", hostPort, r)
		}
	})
	t.Run("shared network", func(t *testing.T) {
		u := newUser(t)
		r := u.nr(sandboxed([]string{"run", "--network", "bridge", "-T", "4000:" + strconv.Itoa(hostPort)}, "tcp", "127.0.0.1:4000", "x")...)
		wantExit(t, r, 0, "probe tcp through -T on the bridge network")
		if !fromLoopback.MatchString(r.stdout) {
			t.Errorf("the host's 127.0.0.1:%d said %q; want \"from 127.0.0.1:PORT\\nx\"", hostPort, r.stdout)
		}
	})
	t.Run("bad spec", func(t *testing.T) {
		for _, spec := range []string{"0", "80-79", "1-3:10-11", "80,80"} {
			r := runNR(t, sandboxed([]string{"-T", spec}, "exit", "0")...)
			wantOwnError(t, r, "-T "+spec, "invalid -T spec", spec)
		}
		r := runNR(t, sandboxed([]string{"-T", "1000-1100"}, "exit", "0")...)
		wantOwnError(t, r, "-T 1000-1100", "at most 64")
	})
}
