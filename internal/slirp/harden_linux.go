package slirp

import (
	"fmt"
	"path/filepath"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// harden is the second step of --enable-sandbox (run_linux.go), after emptyRoot, once
// setup is over: every thread drops all capabilities but
// CAP_NET_BIND_SERVICE (forwards may still bind low ports) and sets
// no_new_privs. Both are per-thread in the kernel, so they go through
// AllThreadsSyscall (which needs a build without cgo, as `make build`
// makes).
func harden() error {
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("no_new_privs: %w", e)
	}
	if _, _, e := syscall.AllThreadsSyscall6(syscall.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("clear ambient capabilities: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	const keep = 1 << unix.CAP_NET_BIND_SERVICE // in the first word
	data := [2]unix.CapUserData{{
		Effective: cur[0].Effective & keep,
		Permitted: cur[0].Permitted & keep,
	}}
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("drop capabilities: %w", e)
	}
	return nil
}

// emptyRoot makes this process's root an empty read-only tmpfs, when it
// has a mount namespace of its own (Podman starts it in a new one); a
// process sharing its parent's mount namespace (RootlessKit) is left as it
// is, since the change would reach the parent too. pivot_root moves the
// root of every thread at once, unlike unshare(CLONE_NEWNS), which the
// kernel refuses to a multithreaded process. keep is a file whose
// directory must stay reachable: the returned function unlinks it later
// (the API socket, removed on exit).
func emptyRoot(keep string) (unlink func() error, done bool, err error) {
	own, err := ownMountNamespace()
	if err != nil || !own {
		return nil, false, err
	}
	unlink = func() error { return nil }
	if keep != "" {
		dir, err := unix.Open(filepath.Dir(keep), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, false, fmt.Errorf("open %s: %w", filepath.Dir(keep), err)
		}
		base := filepath.Base(keep)
		unlink = func() error { return unix.Unlinkat(dir, base, 0) }
	}
	// Nothing we do here may propagate to the namespace we were copied from.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, false, fmt.Errorf("make / private: %w", err)
	}
	const at = "/tmp"
	if err := unix.Mount("tmpfs", at, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0500"); err != nil {
		return nil, false, fmt.Errorf("mount an empty tmpfs on %s: %w", at, err)
	}
	if err := unix.Chdir(at); err != nil {
		return nil, false, fmt.Errorf("chdir %s: %w", at, err)
	}
	// pivot_root(".", ".") stacks the old root under the new one; the
	// detach then drops it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return nil, false, fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return nil, false, fmt.Errorf("detach the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return nil, false, fmt.Errorf("chdir /: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, false, fmt.Errorf("remount / read-only: %w", err)
	}
	return unlink, true, nil
}

func ownMountNamespace() (bool, error) {
	var self, parent unix.Stat_t
	if err := unix.Stat("/proc/self/ns/mnt", &self); err != nil {
		return false, fmt.Errorf("own mount namespace: %w", err)
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/mnt", unix.Getppid()), &parent); err != nil {
		// The parent is gone or hidden: we cannot tell, so stay put.
		return false, nil
	}
	return self.Ino != parent.Ino || self.Dev != parent.Dev, nil
}
