//go:build linux

package seccomp

import (
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	gseccomp "gvisor.dev/gvisor/pkg/seccomp"
)

// goThread is what the Go runtime passes clone(2) for a new thread (its
// os_linux.go cloneFlags, and CLONE_SETTLS, which its amd64 clone adds).
const goThread = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_SYSVSEM | unix.CLONE_THREAD | unix.CLONE_SETTLS

// threadClone allows clone(flags, stack, parent_tid, child_tid, tls) for
// a thread of this process and nothing else: no new process, no
// namespace (glibc's thread too when cgo).
func threadClone(cgo bool) gseccomp.SyscallRule {
	rule := gseccomp.Or{gseccomp.PerArg{eq(goThread), anyValue, eq(0), eq(0), anyValue}}
	if cgo {
		rule = append(rule, gseccomp.PerArg{eq(glibcThread)})
	}
	return rule
}

// processClone allows os/exec's fork: clone(flags, 0, &pidfd, ...) with
// CLONE_VM|CLONE_VFORK, with or without a pidfd, SIGCHLD at exit (its
// forkAndExecInChild1).
func processClone() gseccomp.SyscallRule {
	const vfork = unix.CLONE_VM | unix.CLONE_VFORK | uintptr(unix.SIGCHLD)
	return gseccomp.Or{
		gseccomp.PerArg{eq(vfork), eq(0)},
		gseccomp.PerArg{eq(vfork | unix.CLONE_PIDFD), eq(0)},
	}
}

// archSupervisor: getpgrp for the signal forwarder's foreground check;
// the TLS a Go runtime starting in a daemon the supervisor runs sets.
func archSupervisor(rules gseccomp.SyscallRules) {
	rules.Set(unix.SYS_GETPGRP, all)
	rules.Set(unix.SYS_ARCH_PRCTL, gseccomp.PerArg{eq(linux.ARCH_SET_FS)})
}
