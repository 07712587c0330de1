package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// setupMounts gives the host mount namespace a /proc of its pid namespace
// and a /sys of its network namespace, without letting anything propagate
// back to the machine's mount namespace.
func setupMounts() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private in the host mount namespace: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc for the host pid namespace: %w", err)
	}
	// The new /sys hides the machine's cgroup mounts, which container
	// runtimes (runc under rootless Podman) look for: keep them aside and
	// put them back under it.
	cgroups, cerr := os.MkdirTemp("", "outerns-cgroup-")
	if cerr == nil {
		defer os.Remove(cgroups)
		cerr = unix.Mount("/sys/fs/cgroup", cgroups, "", unix.MS_BIND|unix.MS_REC, "")
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		// Only cosmetic for the tests (/sys/class/net would show the
		// machine's interfaces): go on.
		fmt.Fprintf(os.Stderr, "outerns: warning: mounting /sys for the host network namespace: %v\n", err)
		if cerr == nil {
			unix.Unmount(cgroups, unix.MNT_DETACH)
		}
		return nil
	}
	if cerr == nil {
		cerr = unix.Mount(cgroups, "/sys/fs/cgroup", "", unix.MS_MOVE, "")
	}
	if cerr != nil {
		fmt.Fprintf(os.Stderr, "outerns: warning: no /sys/fs/cgroup for the tests (container runtimes need it): %v\n", cerr)
	}
	return nil
}

// hermeticResolvConf bind-mounts, in the host mount namespace only, an
// /etc/resolv.conf that names the world's DNS server, so that a resolver
// that follows the host's configuration stays inside the test namespaces.
func hermeticResolvConf(base string) (bool, error) {
	p := filepath.Join(base, "resolv.conf")
	if err := os.WriteFile(p, []byte("# written by the netns-run e2e launcher\nnameserver "+worldIP+"\n"), 0o644); err != nil {
		return false, err
	}
	if err := os.Chmod(p, 0o644); err != nil {
		return false, err
	}
	if err := unix.Mount(p, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return false, fmt.Errorf("bind-mounting a hermetic /etc/resolv.conf: %w (tests of the default DNS upstream will skip)", err)
	}
	return true, nil
}

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return nil
}

// dropCaps clears the ambient and inheritable capabilities of every thread,
// so that the tests, started next, run with no capabilities at all (the
// non-root launcher got its capabilities as ambient ones, which children
// would otherwise inherit).
func dropCaps() error {
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); e != 0 {
		return fmt.Errorf("clearing ambient capabilities: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("clearing inheritable capabilities: %w", e)
	}
	return nil
}

// reaper waits for every child of pid 1: ours, and the orphans the kernel
// hands to us. wait(pid) gets one child's status.
type reaper struct {
	mu      sync.Mutex
	exited  map[int]syscall.WaitStatus
	waiters map[int]chan syscall.WaitStatus
}

func startReaper() *reaper {
	r := &reaper{exited: map[int]syscall.WaitStatus{}, waiters: map[int]chan syscall.WaitStatus{}}
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	go func() {
		for {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if errors.Is(err, syscall.EINTR) {
					continue
				}
				if err != nil || pid <= 0 {
					break
				}
				r.record(pid, ws)
			}
			<-chld
		}
	}()
	return r
}

func (r *reaper) record(pid int, ws syscall.WaitStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.waiters[pid]; ok {
		ch <- ws
		delete(r.waiters, pid)
		return
	}
	r.exited[pid] = ws
}

// wait returns a channel that receives pid's status once it has exited.
func (r *reaper) wait(pid int) <-chan syscall.WaitStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan syscall.WaitStatus, 1)
	if ws, ok := r.exited[pid]; ok {
		ch <- ws
		delete(r.exited, pid)
		return ch
	}
	r.waiters[pid] = ch
	return ch
}
