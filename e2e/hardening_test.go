package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The default hardening (docs/ARCHITECTURE.md, Processes: Hardening): the
// network daemon and every supervisor confine themselves with a seccomp
// filter once set up; the agent and the command are never filtered;
// NETNS_RUN_SECCOMP=0 turns it off.

// A thread's seccomp mode, no_new_privs and number of filters in
// /proc/PID/task/TID/status.
var (
	seccompModeRE    = regexp.MustCompile(`(?m)^Seccomp:\s+(\d+)$`)
	seccompNNPRE     = regexp.MustCompile(`(?m)^NoNewPrivs:\s+(\d+)$`)
	seccompFiltersRE = regexp.MustCompile(`(?m)^Seccomp_filters:\s+(\d+)$`)
)

// threadMode is one thread's seccomp state.
type threadMode struct {
	tid, mode, nnp, filters string
}

func (m threadMode) is(mode, nnp, filters string) bool {
	return m.mode == mode && m.nnp == nnp && (m.filters == "" || m.filters == filters)
}

// threadModes reads the seccomp state of every thread of pid.
func threadModes(pid int) []threadMode {
	paths, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var out []threadMode
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		m := threadMode{tid: filepath.Base(filepath.Dir(p))}
		if s := seccompModeRE.FindSubmatch(b); s != nil {
			m.mode = string(s[1])
		}
		if s := seccompNNPRE.FindSubmatch(b); s != nil {
			m.nnp = string(s[1])
		}
		if s := seccompFiltersRE.FindSubmatch(b); s != nil {
			m.filters = string(s[1])
		}
		out = append(out, m)
	}
	return out
}

// wantThreads waits (up to 5 s: the supervisor's filter goes on beside its
// command's start) until every thread of pid has seccomp mode and
// no_new_privs as wanted, and that many filters (unless the kernel does
// not say), and fails the test if that does not come.
func wantThreads(t *testing.T, what string, pid int, mode, nnp, filters string) {
	t.Helper()
	var ms []threadMode
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ms = threadModes(pid)
		ok := len(ms) > 0
		for _, m := range ms {
			if !m.is(mode, nnp, filters) {
				ok = false
			}
		}
		if ok {
			t.Logf("%s (pid %d): %d threads, each Seccomp %s, NoNewPrivs %s, Seccomp_filters %s", what, pid, len(ms), mode, nnp, ms[0].filters)
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	if len(ms) == 0 {
		t.Errorf("%s (pid %d): no threads found", what, pid)
	}
	for _, m := range ms {
		if !m.is(mode, nnp, filters) {
			t.Errorf("%s (pid %d) thread %s: Seccomp %s, NoNewPrivs %s, Seccomp_filters %s; want %s, %s, %s",
				what, pid, m.tid, m.mode, m.nnp, m.filters, mode, nnp, filters)
		}
	}
}

// hardenedSandbox is the processes of a running sandbox.
type hardenedSandbox struct {
	agent, supervisor, command int
}

// sandboxProcs finds the agent (inspect's Pid), its supervisor (the
// agent's parent) and its command (the agent's child) of sandbox name.
func sandboxProcs(t *testing.T, u *user, name string) hardenedSandbox {
	t.Helper()
	agent := int(u.inspect(name)["State"].(map[string]any)["Pid"].(float64))
	st, ok := readStat(agent)
	if !ok {
		t.Fatalf("agent %d of %s not found", agent, name)
	}
	s := hardenedSandbox{agent: agent, supervisor: st.ppid}
	for deadline := time.Now().Add(5 * time.Second); s.command == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, c := range descendants(agent) {
			if c.ppid == agent {
				s.command = c.pid
			}
		}
	}
	if s.command == 0 {
		t.Fatalf("the command of %s (a child of the agent %d) not found", name, agent)
	}
	return s
}

// wantExecUnfiltered runs a command in the sandbox through netns-run exec
// and checks its own Seccomp and NoNewPrivs: an exec is the agent's
// child, never filtered.
func wantExecUnfiltered(t *testing.T, u *user, name string) {
	t.Helper()
	r := u.ok("exec", name, "--", "/bin/sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status")
	if got := strings.Fields(r.stdout); !slices.Equal(got, []string{"NoNewPrivs:", "0", "Seccomp:", "0"}) {
		t.Errorf("an exec'd process: %q; want Seccomp 0 and NoNewPrivs 0", r.stdout)
	}
}

// TestHardening: on a shared network the daemon and the supervisor run
// with every thread in seccomp filter mode and no_new_privs, while the
// sandbox works through them: a published port (loopback fast path and a
// world client through gVisor), DNS through the segment's resolver,
// outbound TCP, exec, port add; the agent, the command and an exec'd
// process are not filtered. A daemon killed and started again by the
// member's (filtered) supervisor, as it rejoins, runs under both filters
// and serves again. On --network private the supervisor, which then hosts
// the gateway, DNS and the ports itself, is filtered the same way.
func TestHardening(t *testing.T) {
	requireLauncher(t)
	t.Run("shared network", func(t *testing.T) {
		u := newUser(t)
		u.ok("run", "-d", "--name", "hard", "--network", "bridge", "-p", "18270:80", "--", probe, "serve-tcp", "80")
		sb := sandboxProcs(t, u, "hard")
		daemon := findDaemon(t, u)
		wantThreads(t, "the daemon", daemon, "2", "1", "1")
		wantThreads(t, "the supervisor", sb.supervisor, "2", "1", "1")
		wantThreads(t, "the agent", sb.agent, "0", "0", "0")
		wantThreads(t, "the command", sb.command, "0", "0", "0")

		wantWorksUnderFilters(t, u, "hard", "18270")
		u.ok("port", "add", "hard", "18271:80")
		waitTCP(t, "127.0.0.1:18271")
		wantThreads(t, "the daemon, after the traffic", daemon, "2", "1", "1")
		wantThreads(t, "the supervisor, after the traffic", sb.supervisor, "2", "1", "1")

		// The next daemon is started by the member's supervisor as it
		// rejoins: under the supervisor's filter, and its own.
		if err := syscall.Kill(daemon, syscall.SIGKILL); err != nil {
			t.Fatalf("kill the daemon %d: %v", daemon, err)
		}
		for _, port := range []string{"18270", "18271"} {
			if got := waitTCP(t, "127.0.0.1:"+port); !strings.HasPrefix(got, "from 127.0.0.1:") {
				t.Errorf("port %s after the daemon's restart: %q", port, got)
			}
		}
		next := findDaemon(t, u)
		wantThreads(t, "the daemon its supervisor started", next, "2", "1", "2")
		r := u.ok("exec", "hard", "--", probe, "resolve", worldName)
		if !strings.Contains(r.stdout, worldIP) {
			t.Errorf("DNS through the restarted daemon:\n%s", r)
		}
		wantNoDenials(t, u, "hard", true)
	})

	t.Run("private network", func(t *testing.T) {
		u := newUser(t)
		u.ok("run", "-d", "--name", "hardp", "--network", "private", "-p", "18272:80", "--", probe, "serve-tcp", "80")
		sb := sandboxProcs(t, u, "hardp")
		wantThreads(t, "the supervisor", sb.supervisor, "2", "1", "1")
		wantThreads(t, "the agent", sb.agent, "0", "0", "0")
		wantThreads(t, "the command", sb.command, "0", "0", "0")
		wantWorksUnderFilters(t, u, "hardp", "18272")
		wantThreads(t, "the supervisor, after the traffic", sb.supervisor, "2", "1", "1")
		wantNoDenials(t, u, "hardp", false)
	})
}

// wantNoDenials: no call of the processes' met the filter's refusal, which
// names it in their logs: the daemon's (shared networks) and the
// sandbox's, where its supervisor's warnings go.
func wantNoDenials(t *testing.T, u *user, name string, daemon bool) {
	t.Helper()
	logs := map[string]string{"netns-run logs " + name: u.ok("logs", name).String()}
	if daemon {
		b, err := os.ReadFile(filepath.Join(u.rt, "netns-run", "daemon.log"))
		if err != nil {
			t.Fatalf("the daemon's log: %v", err)
		}
		logs["daemon.log"] = string(b)
	}
	for what, text := range logs {
		if strings.Contains(text, "seccomp: denied") {
			t.Errorf("%s names a denied call:\n%s", what, text)
		}
	}
}

// TestHardeningOff: NETNS_RUN_SECCOMP=0 in the environment of netns-run
// run leaves its supervisor, and the daemon it starts, unfiltered.
func TestHardeningOff(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.env = append(u.env, "NETNS_RUN_SECCOMP=0")
	u.ok("run", "-d", "--name", "soft", "--network", "bridge", "-p", "18273:80", "--", probe, "serve-tcp", "80")
	waitTCP(t, "127.0.0.1:18273")
	sb := sandboxProcs(t, u, "soft")
	// Give a filter that would go on the time to.
	time.Sleep(200 * time.Millisecond)
	wantThreads(t, "the daemon", findDaemon(t, u), "0", "0", "0")
	wantThreads(t, "the supervisor", sb.supervisor, "0", "0", "0")
	wantThreads(t, "the agent", sb.agent, "0", "0", "0")
}

// wantWorksUnderFilters: the sandbox name serves its published port to a
// loopback client (the fast path) and a world client (through gVisor), and
// an exec in it resolves names and connects out, with the filters on; the
// exec itself is not filtered.
func wantWorksUnderFilters(t *testing.T, u *user, name, port string) {
	t.Helper()
	if got := waitTCP(t, "127.0.0.1:"+port); !strings.HasPrefix(got, "from 127.0.0.1:") {
		t.Errorf("a loopback client of the published port (the fast path): %q", got)
	}
	resp := worldDial(t, "tcp", hostIP+":"+port, "hello", 10*time.Second)
	if resp.Error != "" || !strings.HasPrefix(resp.Reply, "from "+worldIP+":") {
		t.Errorf("a world client of the published port (through gVisor): reply %q, error %q", resp.Reply, resp.Error)
	}
	r := u.ok("exec", name, "--", "/bin/sh", "-c", probe+" resolve "+worldName+"; "+probe+" tcp "+whoamiAddr+" out")
	if !strings.Contains(r.stdout, worldIP+"\n") || !strings.Contains(r.stdout, "\nout") {
		t.Errorf("DNS and outbound TCP from an exec under the filters:\n%s", r)
	}
	wantExecUnfiltered(t, u, name)
}
