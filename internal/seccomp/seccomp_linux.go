//go:build linux && (amd64 || arm64)

// Package seccomp confines a running netns-run process to the system
// calls its data path needs once setup is over: the Go runtime, gVisor's
// netstack on a TAP descriptor, the host sockets of the outbound NAT, of
// ping, of the forwards and of the DNS forwarder, the API socket's
// server, signals and exit (slirp4netns --enable-seccomp;
// docs/SLIRP4NETNS.md, Seccomp). The filter is an allowlist, built with
// gVisor's pkg/seccomp, and applies to every thread of the process.
package seccomp

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/bpf"
	gseccomp "gvisor.dev/gvisor/pkg/seccomp"
)

// Install confines every thread of the process, present and future, to
// the allowlist (allowed below, with its argument checks); it also sets
// no_new_privs, which an unprivileged filter needs. It cannot be undone.
//
// A call off the list fails with EPERM instead of running: a rare call
// the list missed then degrades one operation (an error the code already
// handles, as for a refused socket) instead of killing the network of
// every container behind the process, and it is what slirp4netns's own
// filter answers. A few calls that Go tries before a fallback answer
// ENOSYS instead, so that the fallback is taken (fallbacks). A call made
// through another architecture's ABI (int 0x80 on amd64), which would
// dodge the numbers checked, kills the process.
//
// SECCOMP_FILTER_FLAG_TSYNC (gVisor's SetFilter passes it) puts the
// filter on all threads at once, the kernel copying no_new_privs along;
// a thread the kernel cannot synchronize makes Install fail rather than
// leave that thread unfiltered. Threads started later inherit it.
func Install() error {
	if err := warm(); err != nil {
		return err
	}
	instrs, err := build(unix.Getpid())
	if err != nil {
		return err
	}
	if err := gseccomp.SetFilter(instrs); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("install the syscall filter: %w (a kernel without seccomp filters?)", err)
		}
		return fmt.Errorf("install the syscall filter: %w", err)
	}
	return nil
}

// warm makes what the process would otherwise make on first use, with
// calls the filter refuses: the runtime's netpoller (epoll_create1,
// eventfd2), made for the first pollable descriptor, and the local time
// zone (opening /etc/localtime), loaded for the first local time a log
// line prints.
func warm() error {
	r, w, err := os.Pipe() // pollable: starts the netpoller
	if err != nil {
		return fmt.Errorf("install the syscall filter: %w", err)
	}
	r.Close()
	w.Close()
	time.Now().Zone()
	return nil
}

// build compiles the filter for the process pid (signals may only be sent
// to it).
func build(pid int) ([]bpf.Instruction, error) {
	p := gseccomp.Program{
		RuleSets: []gseccomp.RuleSet{
			fallbacks(),
			{Rules: allowed(pid), Action: gseccomp.Allow},
		},
		Options: gseccomp.ProgramOptions{
			DefaultAction: gseccomp.ReturnError.Code(uint16(unix.EPERM)),
			BadArchAction: gseccomp.KillProcess,
			HotSyscalls:   hot,
		},
	}
	instrs, _, err := p.Build()
	if err != nil {
		return nil, fmt.Errorf("build the syscall filter: %w", err)
	}
	return instrs, nil
}
