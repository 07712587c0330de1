package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExitStatus checks that netns-run exits as its command did (Docker's
// codes for a command that cannot run).
func TestExitStatus(t *testing.T) {
	requireLauncher(t)
	noexec := filepath.Join(t.TempDir(), "not-executable.sh")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\necho RAN\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"exit 0", sandboxed(nil, "exit", "0"), 0},
		{"exit 7", sandboxed(nil, "exit", "7"), 7},
		{"run subcommand", append([]string{"run"}, sandboxed(nil, "exit", "5")...), 5},
		{"run subcommand without --", []string{"run", probe, "exit", "6"}, 6},
		{"killed by SIGTERM", []string{"--", "/bin/sh", "-c", "kill -TERM $$"}, 128 + 15},
		{"killed by SIGKILL", []string{"--", "/bin/sh", "-c", "kill -KILL $$"}, 128 + 9},
		{"command not found", []string{"--", "no-such-command-e2e"}, exitNoFound},
		{"command not executable", []string{"--", noexec}, exitNoExec},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runNR(t, c.args...)
			wantExit(t, r, c.want, "netns-run "+shellQuote(c.args))
			if strings.Contains(r.stdout, "RAN") {
				t.Errorf("the non-executable file ran")
			}
			if c.want == exitNoFound && !strings.Contains(r.stderr, "no-such-command-e2e") {
				t.Errorf("stderr should name the missing command:\n%s", r)
			}
		})
	}
}

// TestSignalForwarding checks that SIGTERM, SIGINT and SIGHUP sent to
// netns-run reach the command.
func TestSignalForwarding(t *testing.T) {
	requireLauncher(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		name := map[syscall.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT", syscall.SIGHUP: "SIGHUP"}[sig]
		t.Run(name, func(t *testing.T) {
			p := startNR(t, sandboxed(nil, "wait-signal", "-timeout", "60s")...)
			p.waitReady()
			p.signal(sig)
			r := p.wait(15 * time.Second)
			wantExit(t, r, 0, "wait-signal after "+name)
			if !strings.Contains(r.stdout, "got "+name+"\n") {
				t.Errorf("the command did not get %s:\n%s", name, r)
			}
		})
	}
}

// TestErrors checks netns-run's own errors: status 125, one line that says
// what is wrong.
func TestErrors(t *testing.T) {
	requireLauncher(t)
	t.Run("bad port spec", func(t *testing.T) {
		for _, c := range []struct{ spec, bad string }{
			{"18080:8x0", "8x0"},
			{"70000:80", "70000"},
			{"80/sctp", "sctp"},
			{"198.51.100.300:18080:80", "198.51.100.300"},
		} {
			t.Run(c.spec, func(t *testing.T) {
				r := runNR(t, "-p", c.spec, "--", "/bin/sh", "-c", "echo RAN")
				msg := wantOwnError(t, r, "-p "+c.spec, c.bad)
				if !strings.Contains(msg, `"`+c.spec+`"`) && !strings.Contains(msg, "'"+c.spec+"'") {
					t.Errorf("the error should quote the spec %q: %s", c.spec, msg)
				}
				if strings.Contains(r.stdout, "RAN") {
					t.Errorf("the command ran despite the bad spec")
				}
			})
		}
	})

	t.Run("host port in use", func(t *testing.T) {
		tl, err := net.Listen("tcp4", "0.0.0.0:18100")
		if err != nil {
			t.Fatal(err)
		}
		defer tl.Close()
		pc, err := net.ListenPacket("udp4", "0.0.0.0:18101")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		for _, spec := range []string{"18100:80", "18101:53/udp"} {
			r := runNR(t, "-p", spec, "--", "/bin/sh", "-c", "echo RAN")
			wantOwnError(t, r, "-p "+spec+" with the host port taken", "already in use", strings.SplitN(spec, ":", 2)[0])
			if strings.Contains(r.stdout, "RAN") {
				t.Errorf("-p %s: the command ran although the port is taken", spec)
			}
		}
	})

	t.Run("user namespaces disabled", func(t *testing.T) {
		unshare := requireTool(t, "unshare")
		// user.max_user_namespaces is per user namespace and limits every
		// namespace below: set to 0 inside a throwaway user namespace,
		// it makes netns-run's clone(CLONE_NEWUSER) fail with ENOSPC there,
		// exactly as on a host where the sysctl is 0.
		const disable = `echo 0 > /proc/sys/user/max_user_namespaces`
		pre := runCmd(t, cmdOpts{}, unshare, "--user", "--map-root-user", "/bin/sh", "-c", disable+` && exec "$0" --user true`, unshare)
		if pre.code == 0 || !strings.Contains(pre.stderr, "No space left on device") {
			t.Skipf("cannot disable user namespaces inside a user namespace on this kernel:\n%s", pre)
		}
		requireNetnsRun(t)
		r := runCmd(t, cmdOpts{}, unshare, "--user", "--map-root-user", "/bin/sh", "-c",
			disable+` && exec "$0" --network private -- /bin/sh -c "echo RAN"`, netnsRun)
		wantOwnError(t, r, "netns-run with user.max_user_namespaces=0", "max_user_namespaces")
		if strings.Contains(r.stdout, "RAN") {
			t.Errorf("the command ran without a user namespace")
		}
	})

	// hideTun runs a shell script in a user+mount namespace where /dev/net
	// is an empty tmpfs, with NR set to netns-run.
	hideTun := func(t *testing.T, script string) result {
		unshare := requireTool(t, "unshare")
		if _, err := os.Stat("/dev/net"); err != nil {
			t.Skipf("no /dev/net to hide: %v", err)
		}
		const hide = `mount -t tmpfs tmpfs /dev/net && test ! -e /dev/net/tun`
		pre := runCmd(t, cmdOpts{}, unshare, "--user", "--map-root-user", "--mount", "/bin/sh", "-c", hide)
		if pre.code != 0 {
			t.Skipf("cannot hide /dev/net/tun in a user+mount namespace:\n%s", pre)
		}
		requireNetnsRun(t)
		return runCmd(t, cmdOpts{env: []string{"NR=" + netnsRun}}, unshare, "--user", "--map-root-user", "--mount",
			"/bin/sh", "-c", hide+" && "+script)
	}

	t.Run("no /dev/net/tun with --link-mode tap", func(t *testing.T) {
		r := hideTun(t, `exec "$NR" --network private --link-mode tap -- /bin/sh -c "echo RAN"`)
		wantOwnError(t, r, "--link-mode tap without /dev/net/tun", "/dev/net/tun")
		if strings.Contains(r.stdout, "RAN") {
			t.Errorf("the command ran without its TAP")
		}
	})

	t.Run("no /dev/net/tun on the shared default network", func(t *testing.T) {
		rt := t.TempDir()
		// The run starts a daemon, which writes under rt until it has
		// gone idle and exited: waited for before rt is removed.
		t.Cleanup((&user{t: t, env: []string{"HOME=" + rt, "XDG_RUNTIME_DIR=" + rt}, rt: rt}).cleanup)
		r := hideTun(t, `XDG_RUNTIME_DIR=`+rt+` HOME=`+rt+` exec "$NR" -- /bin/sh -c "echo RAN"`)
		wantOwnError(t, r, "the default network without /dev/net/tun", "/dev/net/tun", "--network private")
		if strings.Contains(r.stdout, "RAN") {
			t.Errorf("the command ran without its TAP")
		}
	})

	t.Run("no /dev/net/tun with --link-mode auto falls back to packet", func(t *testing.T) {
		r := hideTun(t, fmt.Sprintf(`exec "$NR" --network private --link-mode auto -- %s tcp %s hello-packet`, probe, whoamiAddr))
		wantExit(t, r, 0, "--link-mode auto without /dev/net/tun")
		if !regexp.MustCompile(`^from 198\.51\.100\.1:\d+\nhello-packet$`).MatchString(r.stdout) {
			t.Errorf("outbound TCP over the packet link: %q; want \"from %s:PORT\\nhello-packet\"", r.stdout, hostIP)
		}
		wantLocal(t, r, sandboxIP)
	})

	t.Run("--userns auto without newuidmap", func(t *testing.T) {
		empty := t.TempDir()
		r := runNRWith(t, cmdOpts{env: []string{"PATH=" + empty}}, "--userns", "auto", "--", "/bin/sh", "-c", "echo RAN")
		wantOwnError(t, r, "--userns auto with no newuidmap in PATH", "newuidmap")
		if strings.Contains(r.stdout, "RAN") {
			t.Errorf("the command ran without its id mapping")
		}
	})
}

// TestUsernsAuto checks that --userns auto maps the caller's subordinate
// range (through the setuid newuidmap/newgidmap), so that a command can
// switch to another uid.
func TestUsernsAuto(t *testing.T) {
	requireLauncher(t)
	if m, _ := os.ReadFile("/proc/self/uid_map"); strings.Join(strings.Fields(string(m)), " ") != "0 0 4294967295" {
		t.Skipf("the tests do not run in the initial user namespace (the launcher ran as non-root), "+
			"where newuidmap cannot map subordinate ids: uid_map is %q", strings.TrimSpace(string(m)))
	}
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		requireTool(t, tool)
	}
	sub := map[string]int64{}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		start, ok := subordinateStart(f)
		if !ok {
			t.Skipf("%s has no range for uid %d", f, os.Getuid())
		}
		sub[f] = start
	}
	for _, m := range []struct{ file, sub string }{{"uid_map", "/etc/subuid"}, {"gid_map", "/etc/subgid"}} {
		r := runNR(t, sandboxed([]string{"--userns", "auto"}, "cat", "/proc/self/"+m.file)...)
		wantExit(t, r, 0, "--userns auto: cat /proc/self/"+m.file)
		var total int64
		found := false
		for _, l := range nonEmptyLines(r.stdout) {
			f := strings.Fields(l)
			if len(f) != 3 {
				t.Fatalf("bad %s line %q", m.file, l)
			}
			host, _ := strconv.ParseInt(f[1], 10, 64)
			n, _ := strconv.ParseInt(f[2], 10, 64)
			total += n
			if host == sub[m.sub] && n > 1 {
				found = true
			}
		}
		if total <= 1 || !found {
			t.Errorf("--userns auto: %s is %q; want a range > 1 starting at %d (from %s)", m.file, r.stdout, sub[m.sub], m.sub)
		}
	}
	if setpriv, err := exec.LookPath("setpriv"); err == nil {
		r := runNR(t, "--userns", "auto", "--", setpriv, "--reuid", "1000", "--regid", "1000", "--clear-groups", probe, "id")
		wantExit(t, r, 0, "--userns auto: setpriv to 1000")
		if r.stdout != "uid=1000 gid=1000\n" {
			t.Errorf("after setpriv --reuid 1000: %q, want uid=1000 gid=1000", r.stdout)
		}
	}
}

// subordinateStart finds the first range of the current user in an
// /etc/subuid-style file.
func subordinateStart(path string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	uid := strconv.Itoa(os.Getuid())
	name := os.Getenv("USER")
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(p) != 3 || (p[0] != uid && (name == "" || p[0] != name)) {
			continue
		}
		start, err1 := strconv.ParseInt(p[1], 10, 64)
		n, err2 := strconv.ParseInt(p[2], 10, 64)
		if err1 == nil && err2 == nil && n > 1 {
			return start, true
		}
	}
	return 0, false
}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed", name)
	}
	return p
}

// TestNoLeftovers checks that after netns-run exits nothing of it remains:
// no process, no listener on the published ports, no file in
// XDG_RUNTIME_DIR.
func TestNoLeftovers(t *testing.T) {
	requireLauncher(t)
	check := func(t *testing.T, stopBySignal bool) {
		runtimeDir := filepath.Join(t.TempDir(), "xdg")
		if err := os.Mkdir(runtimeDir, 0o700); err != nil {
			t.Fatal(err)
		}
		requireNetnsRun(t)
		args := sandboxed([]string{"-p", "18120:80", "-p", "18121:53/udp"}, "serve-tcp", "80")
		p := startCmd(t, cmdOpts{env: []string{"XDG_RUNTIME_DIR=" + runtimeDir}}, netnsRun, onPrivate(args)...)
		p.waitReady()
		got := tcpExchange(t, "tcp4", "127.0.0.1:18120", "x", 10*time.Second)
		if !strings.HasPrefix(got, "from ") {
			t.Fatalf("the published port does not work: %q", got)
		}
		self, ok := readStat(p.pid())
		if !ok {
			t.Fatal("netns-run vanished")
		}
		tree := descendants(p.pid())
		if len(tree) == 0 {
			t.Fatal("netns-run has no child process while its command runs")
		}
		t.Logf("netns-run (pid %d) has %d descendant(s)", p.pid(), len(tree))

		var r result
		if stopBySignal {
			p.signal(syscall.SIGTERM)
			r = p.wait(15 * time.Second)
			wantExit(t, r, 128+15, "netns-run after SIGTERM (forwarded to the command, which dies of it)")
		} else {
			// Make the command exit by itself: close the sandbox's
			// server from inside is not possible, so kill the
			// command, a descendant we saw, by its pid.
			cmdPid := 0
			for _, d := range tree {
				if d.comm == "probe" {
					cmdPid = d.pid
				}
			}
			if cmdPid == 0 {
				t.Fatalf("no probe among netns-run's descendants: %v", tree)
			}
			if err := syscall.Kill(cmdPid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			r = p.wait(15 * time.Second)
			wantExit(t, r, 128+9, "netns-run after its command was killed")
		}

		if r.pipesHeld {
			t.Errorf("a process left behind still holds netns-run's stdout or stderr")
		}

		// The ports can be bound again at once.
		if l, err := net.Listen("tcp4", "0.0.0.0:18120"); err != nil {
			t.Errorf("tcp 0.0.0.0:18120 cannot be bound again after netns-run exited: %v", err)
		} else {
			l.Close()
		}
		if hasIPv6Loopback() {
			if l, err := net.Listen("tcp6", "[::]:18120"); err != nil {
				t.Errorf("tcp [::]:18120 cannot be bound again after netns-run exited: %v", err)
			} else {
				l.Close()
			}
		}
		if pc, err := net.ListenPacket("udp4", "0.0.0.0:18121"); err != nil {
			t.Errorf("udp 0.0.0.0:18121 cannot be bound again after netns-run exited: %v", err)
		} else {
			pc.Close()
		}

		// No process remains: neither of the tree we saw, nor any orphan
		// re-parented to us (the subreaper) since netns-run started. Give
		// the kernel a moment to finish dying processes.
		var alive, orphans []procStat
		for deadline := time.Now().Add(3 * time.Second); ; {
			alive = alive[:0]
			for _, d := range tree {
				if stillAlive(d) {
					alive = append(alive, d)
				}
			}
			orphans = orphansSince(self.startTime)
			if (len(alive) == 0 && len(orphans) == 0) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, d := range append(alive, orphans...) {
			t.Errorf("left behind: %s", d)
		}
		for _, d := range append(alive, orphans...) {
			_ = syscall.Kill(d.pid, syscall.SIGKILL) // ours: descendants of the netns-run we started
		}

		entries, err := listTree(runtimeDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("left behind in XDG_RUNTIME_DIR: %v", entries)
		}
	}
	t.Run("SIGTERM to netns-run", func(t *testing.T) { check(t, true) })
	t.Run("command exits", func(t *testing.T) { check(t, false) })
}
