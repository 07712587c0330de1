// Command outerns is the e2e launcher: it runs a test binary inside a
// throwaway "host" network namespace that holds only loopback and a veth to a
// throwaway "world" namespace, as an unprivileged user with no capabilities.
//
//	outerns [-user NAME] [-intruder NAME] [-bindir DIR] [-timeout D] -- TESTBINARY [ARG...]
//
// As root it creates the host namespaces in the initial user namespace and
// runs the tests as NAME (default netns-test), so that the user's netns-run
// meets the machine exactly as on a distro (setuid newuidmap, /dev/net/tun).
// As root it also runs the intruder (this binary again) as a second user
// (-intruder, default netns-test2; "" for none): on a test's request it
// tries one of the test user's unix sockets and says what came back (see
// intruder_linux.go).
// As a normal user it creates a user namespace with an identity mapping and
// keeps only the capabilities it needs to wire the namespaces, then runs the
// tests with none.
//
// The host namespaces are network, mount and pid: the launcher is pid 1 of
// the pid namespace, so every process the tests leave behind dies with it;
// the mount namespace gets a /proc of that pid namespace, a /sys of the host
// network namespace, and an /etc/resolv.conf naming the world's DNS server
// (198.51.100.2), so that nothing a test runs can reach the machine's real
// resolver.
//
// The world agent (this binary again) runs in the world namespace and serves,
// on 198.51.100.2: a whoami server on TCP and UDP port 7777, DNS on port 53
// (world.e2e.test -> 198.51.100.2) and an HTTP control API on a unix socket
// through which tests dial from the world to the host (see world_linux.go);
// and on 198.51.100.3 a second DNS server (alt.e2e.test -> 198.51.100.33).
//
// Environment given to the tests: PATH, HOME, XDG_RUNTIME_DIR, TMPDIR (fresh
// 0700 directories owned by the test user, removed at the end),
// NETNS_RUN_E2E=1, NETNS_RUN_E2E_WORLD_SOCK, NETNS_RUN_E2E_BIN_DIR, and
// NETNS_RUN_E2E_INTRUDER_SOCK when the intruder runs.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	stageEnv      = "NETNS_RUN_OUTERNS_STAGE"
	stageHost     = "host"
	stageWorld    = "world"
	stageIntruder = "intruder"

	hostIP    = "198.51.100.1"
	worldIP   = "198.51.100.2"
	prefixLen = 24
	// IPv6 on the same veth, documentation addresses too.
	hostIP6    = "2001:db8::1"
	worldIP6   = "2001:db8::2"
	prefixLen6 = 64
	hostIf     = "world0"
	worldIf    = "eth0"

	whoamiPort = 7777
	worldName  = "world.e2e.test"
	// A second DNS server in the world, on an address of its own, that
	// knows one name the first does not: what run --dns names.
	altDNSIP   = "198.51.100.3"
	altDNSName = "alt.e2e.test"
	altDNSAddr = "198.51.100.33"

	testPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Capabilities the non-root launcher keeps inside its own user namespace.
const (
	capNetBindService = 10
	capNetAdmin       = 12
	capSysAdmin       = 21
)

var launcherCaps = []uintptr{capNetAdmin, capSysAdmin, capNetBindService}

type options struct {
	user     string
	intruder string
	binDir   string
	timeout  time.Duration
	args     []string
}

func init() {
	// Pdeathsig fires when the thread that started a child exits: keep the
	// main goroutine, which starts every child, on one thread for life.
	runtime.LockOSThread()
}

func main() {
	log := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "outerns: "+format+"\n", a...)
	}
	var code int
	var err error
	switch stage := os.Getenv(stageEnv); stage {
	case "":
		code, err = launch()
	case stageHost:
		code, err = hostStage()
	case stageWorld:
		err = worldMain(os.Args[1:])
		if err != nil {
			code = 1
		}
	case stageIntruder:
		err = intruderMain()
		code = 1
	default:
		err = fmt.Errorf("unknown %s=%q", stageEnv, stage)
		code = 1
	}
	if err != nil {
		log("%v", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("outerns", flag.ContinueOnError)
	fs.StringVar(&o.user, "user", "netns-test", "as root: run the tests as this user")
	fs.StringVar(&o.intruder, "intruder", "netns-test2", `as root: run the intruder as this second user ("" for none)`)
	fs.StringVar(&o.binDir, "bindir", "", "directory with netns-run and probe (default: this binary's directory)")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "kill the tests after this long")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: outerns [-user NAME] [-intruder NAME] [-bindir DIR] [-timeout D] -- TESTBINARY [ARG...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.args = fs.Args()
	if len(o.args) == 0 {
		fs.Usage()
		return o, errors.New("no test binary given")
	}
	if o.binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("finding own path: %w", err)
		}
		o.binDir = filepath.Dir(exe)
	}
	abs, err := filepath.Abs(o.binDir)
	if err != nil {
		return o, err
	}
	o.binDir = abs
	if o.args[0], err = filepath.Abs(o.args[0]); err != nil {
		return o, err
	}
	return o, nil
}

// launch re-executes this binary as pid 1 of fresh network, mount and pid
// namespaces (plus a user namespace when not root) and waits for it.
func launch() (int, error) {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		return 2, err
	}
	// Resolved flags travel on the command line of the next stage.
	args := []string{"-user", o.user, "-intruder", o.intruder, "-bindir", o.binDir, "-timeout", o.timeout.String(), "--"}
	args = append(args, o.args...)
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), stageEnv+"="+stageHost)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	if uid := os.Getuid(); uid != 0 {
		gid := os.Getgid()
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
		attr.GidMappingsEnableSetgroups = false
		attr.AmbientCaps = launcherCaps
	}
	cmd.SysProcAttr = attr

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		if os.Getuid() != 0 {
			return 1, fmt.Errorf("creating the user+network namespaces: %w (are unprivileged user namespaces enabled? see sysctl user.max_user_namespaces)", err)
		}
		return 1, fmt.Errorf("creating the host namespaces: %w", err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	return exitCode(cmd.ProcessState, err)
}

func exitCode(ps *os.ProcessState, err error) (int, error) {
	if ps == nil {
		return 1, err
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ps.ExitCode(), nil
}

// testUser is who the tests run as.
type testUser struct {
	uid, gid uint32
	groups   []uint32
	name     string
	switchTo bool // set credentials when starting the tests (we are root)
}

func hostStage() (code int, err error) {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		return 2, err
	}
	if os.Getpid() != 1 {
		return 1, fmt.Errorf("host stage is pid %d, want 1 of a new pid namespace", os.Getpid())
	}
	// Signals first: until the tests run, a signal ends the launcher.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)

	if err := setupMounts(); err != nil {
		return 1, err
	}
	tu, err := lookupTestUser(o.user)
	if err != nil {
		return 1, err
	}
	if err := linkUp("lo"); err != nil {
		return 1, err
	}
	// Unprivileged ICMP sockets for every group, as systemd-based distros
	// ship it (a new network namespace starts with none allowed): ping
	// from a sandbox goes out through them.
	if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0); err != nil {
		return 1, fmt.Errorf("allowing ICMP sockets (net.ipv4.ping_group_range): %w", err)
	}

	// A short name: the tests' XDG_RUNTIME_DIR is base/run, and rootless
	// Podman's API socket path under it ($XDG_RUNTIME_DIR/libpod/tmp/<64
	// hex>.net) must fit a unix socket address (TestPodmanOnSlirp4netns).
	base, err := os.MkdirTemp("", "nr-e2e-")
	if err != nil {
		return 1, fmt.Errorf("creating the run directory: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(base); rerr != nil {
			fmt.Fprintf(os.Stderr, "outerns: removing %s: %v\n", base, rerr)
		}
	}()
	if err := os.Chmod(base, 0o711); err != nil {
		return 1, err
	}
	dirs := map[string]string{}
	for _, d := range []string{"home", "run", "tmp"} {
		p := filepath.Join(base, d)
		if err := os.Mkdir(p, 0o700); err != nil {
			return 1, err
		}
		if err := os.Chown(p, int(tu.uid), int(tu.gid)); err != nil {
			return 1, fmt.Errorf("giving %s to the test user: %w", p, err)
		}
		dirs[d] = p
	}
	hostDNS, err := hermeticResolvConf(base)
	if err != nil {
		fmt.Fprintf(os.Stderr, "outerns: warning: %v\n", err)
	}

	// From here on this process is the reaper of its pid namespace.
	r := startReaper()

	sock := filepath.Join(base, "world.sock")
	w, err := startWorld(sock, tu, r)
	if err != nil {
		return 1, err
	}
	defer w.stop()
	if err := w.wire(); err != nil {
		return 1, err
	}
	if err := w.waitReady(15 * time.Second); err != nil {
		return 1, err
	}
	if !tu.switchTo {
		if err := dropCaps(); err != nil {
			return 1, err
		}
	}
	// A second uid exists only when we are root (a user namespace of ours
	// maps one uid); without it the tests that need it skip.
	var intruderSock string
	var ip *intruderProc
	var intruderDone <-chan struct{} // nil: none runs
	if tu.switchTo && o.intruder != "" {
		ip, intruderSock, err = startIntruder(base, o.intruder, tu, r)
		if err != nil {
			return 1, err
		}
		defer ip.stop()
		intruderDone = ip.done
	}

	select {
	case s := <-sigs:
		return 128 + int(s.(syscall.Signal)), fmt.Errorf("got %v before the tests started", s)
	default:
	}

	cmd := exec.Command(o.args[0], o.args[1:]...)
	cmd.Dir = dirs["home"]
	cmd.Env = []string{
		"PATH=" + testPath,
		"HOME=" + dirs["home"],
		"XDG_RUNTIME_DIR=" + dirs["run"],
		"TMPDIR=" + dirs["tmp"],
		"USER=" + tu.name,
		"LOGNAME=" + tu.name,
		"NETNS_RUN_E2E=1",
		"NETNS_RUN_E2E_WORLD_SOCK=" + sock,
		"NETNS_RUN_E2E_BIN_DIR=" + o.binDir,
	}
	if hostDNS {
		cmd.Env = append(cmd.Env, "NETNS_RUN_E2E_HOST_DNS="+worldIP)
	}
	if intruderSock != "" {
		cmd.Env = append(cmd.Env, "NETNS_RUN_E2E_INTRUDER_SOCK="+intruderSock)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if tu.switchTo {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: tu.uid, Gid: tu.gid, Groups: tu.groups}
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w (the test user %s must be able to reach and execute it: put the binaries in a world-readable directory, as scripts/run-e2e.sh does)", err, tu.name)
		}
		return 1, fmt.Errorf("starting the tests: %w", err)
	}
	testPid := cmd.Process.Pid
	testExit := r.wait(testPid)

	deadline := time.NewTimer(o.timeout)
	defer deadline.Stop()
	var killTimer <-chan time.Time
	for {
		select {
		case ws := <-testExit:
			return statusCode(ws), nil
		case ws := <-w.exit:
			w.exit = nil
			fmt.Fprintf(os.Stderr, "outerns: the world agent (pid %d) exited early: %s\n", w.pid, describe(ws))
		case <-intruderDone:
			intruderDone = nil
			fmt.Fprintf(os.Stderr, "outerns: the intruder (pid %d) exited early: %s (the tests that use it will fail)\n", ip.pid, describe(ip.ws))
		case s := <-sigs:
			_ = syscall.Kill(testPid, s.(syscall.Signal))
		case <-deadline.C:
			fmt.Fprintf(os.Stderr, "outerns: tests still running after %v: sending SIGQUIT to pid %d\n", o.timeout, testPid)
			_ = syscall.Kill(testPid, syscall.SIGQUIT)
			killTimer = time.After(15 * time.Second)
		case <-killTimer:
			fmt.Fprintf(os.Stderr, "outerns: killing the tests (pid %d)\n", testPid)
			_ = syscall.Kill(testPid, syscall.SIGKILL)
		}
	}
}

func statusCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

func lookupTestUser(name string) (testUser, error) {
	if os.Getuid() != 0 {
		// The user namespace maps only our own ids: run the tests as
		// ourselves, with whatever supplementary groups we already have.
		return testUser{uid: uint32(os.Getuid()), gid: uint32(os.Getgid()), name: currentName()}, nil
	}
	u, err := lookupPasswd(name)
	if err != nil {
		return testUser{}, fmt.Errorf("test user %q: %w (create it with scripts/ensure-test-user.sh)", name, err)
	}
	if u.uid == 0 {
		return testUser{}, fmt.Errorf("test user %q has uid 0: the tests must run unprivileged", name)
	}
	u.switchTo = true
	return u, nil
}

func currentName() string {
	if n := os.Getenv("USER"); n != "" {
		return n
	}
	return strconv.Itoa(os.Getuid())
}

// lookupPasswd reads /etc/passwd and /etc/group (the binary is static, and
// the test user is a local user created by scripts/ensure-test-user.sh).
func lookupPasswd(name string) (testUser, error) {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return testUser{}, err
	}
	var u testUser
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 || f[0] != name {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return testUser{}, fmt.Errorf("bad /etc/passwd line for %s", name)
		}
		u = testUser{uid: uint32(uid), gid: uint32(gid), name: name}
		found = true
		break
	}
	if !found {
		return testUser{}, errors.New("no such user in /etc/passwd")
	}
	groups := []uint32{u.gid}
	if data, err := os.ReadFile("/etc/group"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 4 {
				continue
			}
			for _, m := range strings.Split(f[3], ",") {
				if m == name {
					if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil && uint32(gid) != u.gid {
						groups = append(groups, uint32(gid))
					}
				}
			}
		}
	}
	u.groups = groups
	return u, nil
}
