package ethswitch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The test binary re-executes itself in a private user+net namespace (the
// caller mapped to root), so it never touches the machine's network and works
// unprivileged. Tests needing it call needNS; the socketpair tests run either
// way.
const nsEnv = "ETHSWITCH_TEST_NS"

func TestMain(m *testing.M) {
	if os.Getenv(nsEnv) == "" {
		cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
		cmd.Env = append(os.Environ(), nsEnv+"=private")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:                 unix.CLONE_NEWUSER | unix.CLONE_NEWNET,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
			GidMappingsEnableSetgroups: false,
			Pdeathsig:                  unix.SIGKILL,
		}
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			os.Exit(0)
		case errors.As(err, &ee):
			if ee.ExitCode() < 0 {
				fmt.Fprintln(os.Stderr, "ethswitch test child:", err)
				os.Exit(1)
			}
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintf(os.Stderr, "ethswitch: no private user+net namespace (%v): namespace tests will be skipped\n", err)
		os.Setenv(nsEnv, "none")
	}
	os.Exit(m.Run())
}

func needNS(t testing.TB) {
	t.Helper()
	if os.Getenv(nsEnv) != "private" {
		t.Skip("needs a private user+net namespace")
	}
}

// netns is an OS thread in a network namespace of its own, where the test
// runs functions (creating TAPs and sockets, running commands: children
// forked from that thread inherit its namespace).
type netns struct {
	ch chan func()
}

func newNetns(t testing.TB) *netns {
	t.Helper()
	needNS(t)
	ns := &netns{ch: make(chan func())}
	errc := make(chan error)
	go func() {
		// Never unlocked: the thread exits with the goroutine, so its
		// namespace never leaks to other goroutines.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for f := range ns.ch {
			f()
		}
	}()
	if err := <-errc; err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	t.Cleanup(func() { close(ns.ch) })
	return ns
}

// do runs f on the namespace's thread.
func (ns *netns) do(f func()) {
	done := make(chan struct{})
	ns.ch <- func() { defer close(done); f() }
	<-done
}

// run runs a command in the namespace and returns its combined output.
func (ns *netns) run(name string, args ...string) (out string, err error) {
	ns.do(func() {
		b, e := exec.Command(name, args...).CombinedOutput()
		out, err = string(b), e
	})
	return out, err
}

func (ns *netns) mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := ns.run(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// tap creates TAP device name (IFF_TAP|IFF_NO_PI) in the namespace, gives it
// mac and mtu, and brings it and lo up. The caller owns the returned fd.
func (ns *netns) tap(t testing.TB, name, mac string, mtu int) int {
	t.Helper()
	var fd int
	var err error
	ns.do(func() {
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		var ifr *unix.Ifreq
		ifr, err = unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
		}
	})
	if err != nil {
		t.Fatalf("create TAP %s: %v", name, err)
	}
	ns.mustRun(t, "ip", "link", "set", "lo", "up")
	ns.mustRun(t, "ip", "link", "set", name, "address", mac, "mtu", fmt.Sprint(mtu), "up")
	return fd
}
