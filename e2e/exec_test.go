package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPIDNamespace checks that the sandbox has a pid namespace of its own,
// whose pid 1 is the agent, and a /proc that shows only its processes.
func TestPIDNamespace(t *testing.T) {
	requireLauncher(t)
	r := runNR(t, "--", "/bin/sh", "-c", `echo $$; cd /proc && echo [0-9]*; tr '\0' ' ' < /proc/1/cmdline; echo; readlink /proc/1/exe`)
	wantExit(t, r, 0, "list /proc in the sandbox")
	lines := strings.Split(r.stdout, "\n")
	if len(lines) < 4 {
		t.Fatalf("unexpected output:\n%s", r)
	}
	self, pids := strings.TrimSpace(lines[0]), strings.Fields(lines[1])
	if len(pids) != 2 || !slices.Contains(pids, "1") || !slices.Contains(pids, self) {
		t.Errorf("/proc in the sandbox lists pids %q; want 1 (the agent) and %s (the command) only", pids, self)
	}
	if !strings.HasPrefix(lines[2], "netns-run-sandbox") {
		t.Errorf("pid 1 of the sandbox is %q; want the agent (netns-run-sandbox)", lines[2])
	}
	// make build puts the agent's own binary beside netns-run: pid 1 is it.
	if want := filepath.Join(binDir, "netns-run-agent"); lines[3] != want {
		t.Errorf("pid 1 of the sandbox runs %q; want the agent's own binary %s", lines[3], want)
	}
	if strings.Contains(r.stderr, "/proc") {
		t.Errorf("netns-run warned about /proc:\n%s", r)
	}

	// The caller's pid namespace is not the sandbox's.
	own, _ := os.Readlink("/proc/self/ns/pid")
	in := runNR(t, sandboxed(nil, "ns")...)
	wantExit(t, in, 0, "probe ns in the sandbox")
	for _, l := range nonEmptyLines(in.stdout) {
		if k, v, _ := strings.Cut(l, " "); k == "pid" && v == own {
			t.Errorf("the sandbox shares the caller's pid namespace (%s)", own)
		}
	}
}

// TestAgentKilled checks that SIGKILL to the sandbox's agent (its pid 1)
// takes every process of the sandbox with it, and that netns-run reports
// it as a kill.
func TestAgentKilled(t *testing.T) {
	requireLauncher(t)
	p := startNR(t, "--", "/bin/sh", "-c",
		fmt.Sprintf("%s serve-tcp 80 & %s serve-udp 53 & exec %s wait-signal -timeout 60s", probe, probe, probe))
	p.waitReady()
	// Let the background servers come up too.
	deadline := time.Now().Add(lineTimeout)
	var tree []procStat
	for {
		tree = descendants(p.pid())
		if len(tree) >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var agent procStat
	for _, d := range tree {
		if d.ppid == p.pid() {
			agent = d
		}
	}
	if agent.pid == 0 || len(tree) < 4 {
		t.Fatalf("want the agent and three processes under netns-run, got %v", tree)
	}
	if err := syscall.Kill(agent.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := p.wait(15 * time.Second)
	wantExit(t, r, 128+9, "netns-run after its agent was killed")
	if r.pipesHeld {
		t.Errorf("a process of the sandbox still holds netns-run's stdout or stderr")
	}
	var alive []procStat
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		alive = alive[:0]
		for _, d := range tree {
			if stillAlive(d) {
				alive = append(alive, d)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, d := range alive {
		t.Errorf("left behind after the agent was killed: %s", d)
		_ = syscall.Kill(d.pid, syscall.SIGKILL)
	}
}

// TestMaskedProc checks that where a fresh /proc cannot be mounted (a
// partly masked /proc, as in a container) the sandbox still runs, with a
// warning.
func TestMaskedProc(t *testing.T) {
	requireLauncher(t)
	unshare := requireTool(t, "unshare")
	const mask = `mount -t tmpfs tmpfs /proc/sys`
	pre := runCmd(t, cmdOpts{}, unshare, "--user", "--map-root-user", "--mount", "/bin/sh", "-c", mask)
	if pre.code != 0 {
		t.Skipf("cannot mask /proc/sys in a user+mount namespace:\n%s", pre)
	}
	requireNetnsRun(t)
	r := runCmd(t, cmdOpts{env: []string{"NR=" + netnsRun}}, unshare, "--user", "--map-root-user", "--mount",
		"/bin/sh", "-c", mask+` && exec "$NR" --network private -- /bin/sh -c "echo RAN"`)
	wantExit(t, r, 0, "netns-run under a masked /proc")
	if r.stdout != "RAN\n" {
		t.Errorf("the command did not run:\n%s", r)
	}
	if !strings.Contains(r.stderr, "/proc") {
		t.Errorf("no warning about /proc on stderr:\n%s", r)
	}
}

// TestExecIntoSandbox checks netns-run exec: a command run in a running
// sandbox sees what the sandbox's command sees, and its status, stdin and
// output pass through.
func TestExecIntoSandbox(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	name := "exec-box"
	p := startCmd(t, cmdOpts{env: u.env}, netnsRun, "--network", "private", "--name", name, "--hostname", "exec-host",
		"--add-host", "db.e2e:198.51.100.9", "--", probe, "wait-signal", "-timeout", "60s")
	p.waitReady()
	exec := func(args ...string) result {
		t.Helper()
		return u.nr(append([]string{"exec"}, args...)...)
	}

	t.Run("same view", func(t *testing.T) {
		r := exec(name, "--", probe, "hostname")
		wantExit(t, r, 0, "exec probe hostname")
		if r.stdout != "exec-host\n" {
			t.Errorf("hostname in exec: %q, want exec-host", r.stdout)
		}
		r = exec(name, "--", probe, "cat", "/etc/hosts")
		wantExit(t, r, 0, "exec probe cat /etc/hosts")
		if !strings.Contains(r.stdout, "198.51.100.9\tdb.e2e\n") || !strings.HasSuffix(r.stdout, sandboxIP+"\texec-host\n"+sandboxIP6+"\texec-host\n") {
			t.Errorf("/etc/hosts in exec:\n%s", showTabs(r.stdout))
		}
		r = exec(name, "--", probe, "ifinfo", "eth0")
		wantExit(t, r, 0, "exec probe ifinfo")
		if !strings.Contains(r.stdout, sandboxIP) {
			t.Errorf("eth0 in exec lacks %s:\n%s", sandboxIP, r.stdout)
		}
	})

	t.Run("exit status", func(t *testing.T) {
		wantExit(t, exec(name, "--", probe, "exit", "7"), 7, "exec probe exit 7")
		wantExit(t, exec(name, "--", "/bin/sh", "-c", "kill -TERM $$"), 128+15, "exec of a command killed by SIGTERM")
		r := exec(name, "--", "no-such-command-e2e")
		wantExit(t, r, exitNoFound, "exec of a missing command")
		if !strings.Contains(r.stderr, "no-such-command-e2e") {
			t.Errorf("stderr should name the missing command:\n%s", r)
		}
	})

	t.Run("stdin with -i", func(t *testing.T) {
		r := runCmd(t, cmdOpts{env: u.env, stdin: strings.NewReader("hello\n")}, netnsRun,
			"exec", "-i", name, "--", "/bin/sh", "-c", `read x; echo "got $x"`)
		wantExit(t, r, 0, "exec -i")
		if r.stdout != "got hello\n" {
			t.Errorf("exec -i: %q, want \"got hello\\n\"", r.stdout)
		}
	})

	t.Run("processes", func(t *testing.T) {
		r := exec(name, "--", "/bin/sh", "-c", `echo $$; cd /proc && echo [0-9]*`)
		wantExit(t, r, 0, "exec: list /proc")
		lines := nonEmptyLines(r.stdout)
		if len(lines) != 2 {
			t.Fatalf("unexpected output:\n%s", r)
		}
		pids := strings.Fields(lines[1])
		if len(pids) != 3 || !slices.Contains(pids, "1") || !slices.Contains(pids, lines[0]) {
			t.Errorf("/proc seen by an exec lists %q; want 1 (the agent), the command and the exec (%s)", pids, lines[0])
		}
	})

	t.Run("the sandbox ends while it runs", func(t *testing.T) {
		e := startCmd(t, cmdOpts{env: u.env}, netnsRun, "exec", name, "--", "/bin/sh", "-c", "echo ready; exec sleep 60")
		e.waitReady()
		p.signal(syscall.SIGTERM)
		wantExit(t, p.wait(15*time.Second), 0, "the sandbox's command after SIGTERM")
		r := e.wait(15 * time.Second)
		wantExit(t, r, 128+9, "exec when the sandbox ended")
		if r.pipesHeld {
			t.Errorf("the exec'd process outlived the sandbox")
		}
		r = exec(name, "--", probe, "exit", "0")
		if r.code == 0 {
			t.Errorf("exec into a sandbox that ended succeeded:\n%s", r)
		}
	})
}

// TestExecUser: exec -u USER[:GROUP] as docker exec -u, in a sandbox
// whose user namespace maps a subordinate range (--userns auto): names
// from the sandbox's /etc/passwd and /etc/group, numbers with no entry,
// the user's HOME unless -e sets one; a name that is not there, and an
// id the namespace does not map, fail with status 126 and a word on why.
func TestExecUser(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("run", "-d", "--name", "mapped", "--userns", "auto", "--network", "none", "--", "sleep", "60")
	u.ok("run", "-d", "--name", "rootonly", "--network", "none", "--", "sleep", "60")
	t.Cleanup(func() { u.nr("stop", "-t", "1", "mapped", "rootonly") })
	ids := `echo "$(id -u) $(id -g) $(id -G) $HOME"`
	for _, c := range []struct{ box, user, env, want string }{
		{"mapped", "nobody", "", "65534 65534 65534 /nonexistent"},
		{"mapped", "1234:50", "", "1234 50 50 /"},
		{"mapped", "1234", "", "1234 0 0 /"},
		{"mapped", "daemon:nogroup", "", "1 65534 65534 /usr/sbin"},
		{"mapped", "nobody", "HOME=/tmp", "65534 65534 65534 /tmp"},
		{"rootonly", "root", "", "0 0 0 /root"},
		{"rootonly", "0:0", "", "0 0 0 /root"},
	} {
		args := []string{"exec", "-u", c.user}
		if c.env != "" {
			args = append(args, "-e", c.env)
		}
		r := u.nr(append(args, c.box, "/bin/sh", "-c", ids)...)
		wantExit(t, r, 0, "exec -u "+c.user+" in "+c.box)
		if got := strings.TrimSpace(r.stdout); got != c.want {
			t.Errorf("exec -u %s %s in %s: uid gid groups home = %q; want %q", c.user, c.env, c.box, got, c.want)
		}
	}
	for _, c := range []struct{ box, user, want string }{
		{"mapped", "no-such-user-e2e", "unable to find user no-such-user-e2e"},
		{"mapped", "nobody:no-such-group-e2e", "unable to find group no-such-group-e2e"},
		{"rootonly", "nobody", "uid 65534 is not mapped in the sandbox (it maps 0 only)"},
	} {
		r := u.nr("exec", "-u", c.user, c.box, "id")
		if r.code != 126 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("exec -u %s in %s: %s; want status 126 and %q", c.user, c.box, r, c.want)
		}
	}
}
