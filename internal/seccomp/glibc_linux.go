//go:build linux && (amd64 || arm64)

package seccomp

import (
	"golang.org/x/sys/unix"
	gseccomp "gvisor.dev/gvisor/pkg/seccomp"
)

// A build with cgo (go test's default when a C compiler is there; never
// make build) has its threads made by glibc's pthread_create: clone3
// first, clone when that is ENOSYS (see fallbacks), then rseq and
// set_robust_list in the new thread, its stack's guard page by mprotect,
// glibc's futexes. The lists take these when cgoBuild says so.

// glibcThread is glibc's clone flags for a thread (nptl's createthread).
const glibcThread = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_SYSVSEM | unix.CLONE_THREAD | unix.CLONE_SETTLS |
	unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID

func glibcRules(r gseccomp.SyscallRules) gseccomp.SyscallRules {
	r.Remove(unix.SYS_FUTEX) // glibc's condition variables and mutexes use more operations
	r.Set(unix.SYS_FUTEX, all)
	r.Set(unix.SYS_RSEQ, all)
	r.Set(unix.SYS_SET_ROBUST_LIST, all)
	r.Set(unix.SYS_BRK, all)
	r.Set(unix.SYS_MPROTECT, gseccomp.PerArg{anyValue, anyValue, gseccomp.BitsAllowlist(unix.PROT_READ | unix.PROT_WRITE)})
	return r
}
