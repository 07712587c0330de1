//go:build linux && (amd64 || arm64)

package seccomp

import (
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	gseccomp "gvisor.dev/gvisor/pkg/seccomp"
)

// The allowlist. It was derived from the code paths that run after setup
// (the Go runtime's, gVisor's fdbased link and netstack, stack's NAT,
// forward and forward/relay, stack/resolver, internal/slirp's API server)
// and checked against what the process really calls: strace -f of the
// slirp4netns mode under the e2e tests with rootless Podman and
// RootlessKit, which also showed that no call fails with the filter's
// EPERM (docs/SLIRP4NETNS.md, Seccomp). Setup (the TAP helper's exec,
// netlink, mounts, pivot_root, capset, the API socket's bind, reading
// resolv.conf) is over when the filter goes on, so none of it is here:
// no exec, fork, mount, ptrace, bpf, keyctl, unshare or setns, and no
// open or stat of any path.
//
// Arguments are checked where that is cheap and narrows what an attacker
// holding the process could do: no executable or file-backed memory,
// threads only (exact clone flags), signals to this process only, sockets
// of the IPv4 and IPv6 families only, the socket options Go's net package
// sets, three fcntl commands, private futexes.
var (
	anyValue = gseccomp.AnyValue{}
	all      = gseccomp.MatchAll{}
)

// hot are checked first: the busy relay's one call with arguments to
// check. The kernel's seccomp cache lets calls allowed whatever their
// arguments (read, write, readv, writev, ppoll, epoll_pwait, ...) skip
// the filter altogether.
var hot = []uintptr{unix.SYS_FUTEX}

func eq(v uintptr) gseccomp.ValueMatcher { return gseccomp.EqualTo(v) }

// fallbacks fail with ENOSYS, not EPERM: calls that Go's standard library
// (or glibc) tries first and replaces with others when the kernel lacks
// them. io.Copy to a kernel TCP socket from another kernel socket or a
// file tries sendfile (after splice, which finds pipe2 refused and steps
// aside), and takes EPERM as the copy's failure; ENOSYS makes it read and
// write instead. glibc's pthread_create (cgo builds) tries clone3, whose
// flags a filter cannot see, and falls back to clone.
func fallbacks() gseccomp.RuleSet {
	return gseccomp.RuleSet{
		Rules: gseccomp.MakeSyscallRules(map[uintptr]gseccomp.SyscallRule{
			unix.SYS_SENDFILE:        all,
			unix.SYS_COPY_FILE_RANGE: all,
			unix.SYS_CLONE3:          all,
		}),
		Action: gseccomp.ReturnError.Code(uint16(unix.ENOSYS)),
	}
}

// allowed is the allowlist for the process pid.
func allowed(pid int) gseccomp.SyscallRules {
	rules := gseccomp.MakeSyscallRules(map[uintptr]gseccomp.SyscallRule{
		// Memory: the Go runtime's heap, stacks and scavenger, and the
		// vDSO getrandom's state (MAP_DROPPABLE). Anonymous and never
		// executable; the runtime names its mappings with prctl
		// (GODEBUG decoratemappings).
		unix.SYS_MMAP: gseccomp.PerArg{
			anyValue,
			anyValue,
			gseccomp.BitsAllowlist(unix.PROT_READ | unix.PROT_WRITE),
			gseccomp.MaskedEqual(unix.MAP_ANONYMOUS, unix.MAP_ANONYMOUS),
		},
		unix.SYS_MUNMAP:  all,
		unix.SYS_MADVISE: all,
		unix.SYS_PRCTL:   gseccomp.PerArg{eq(unix.PR_SET_VMA), eq(unix.PR_SET_VMA_ANON_NAME)},

		// Threads, scheduling and time. clone is per architecture
		// (threadClone).
		unix.SYS_EXIT:       all, // a thread
		unix.SYS_EXIT_GROUP: all,
		unix.SYS_FUTEX: gseccomp.PerArg{
			anyValue,
			gseccomp.BitsAllowlist(linux.FUTEX_WAIT | linux.FUTEX_WAKE | linux.FUTEX_PRIVATE_FLAG),
		},
		unix.SYS_SCHED_YIELD:       all,
		unix.SYS_NANOSLEEP:         all,
		unix.SYS_SCHED_GETAFFINITY: all, // GOMAXPROCS follows the CPUs and the cgroup's limit
		unix.SYS_GETPID:            all,
		unix.SYS_GETTID:            all,
		unix.SYS_GETGID:            all, // named when ping_group_range refuses ICMP sockets
		unix.SYS_CLOCK_GETTIME:     all, // the vDSO's fallback, on clocks it cannot read
		unix.SYS_GETRANDOM:         all, // netstack's ISNs and ports, DNS ids
		unix.SYS_RESTART_SYSCALL:   all, // a sleep resumed after SIGSTOP and SIGCONT

		// Signals: Go's handlers, preemption (SIGURG) and raising a
		// fatal signal, to this process only.
		unix.SYS_RT_SIGACTION:   all,
		unix.SYS_RT_SIGPROCMASK: all,
		unix.SYS_RT_SIGRETURN:   all,
		unix.SYS_SIGALTSTACK:    all,
		unix.SYS_TGKILL:         gseccomp.PerArg{eq(uintptr(pid))},
		unix.SYS_KILL:           gseccomp.PerArg{eq(uintptr(pid))},

		// Descriptors: the TAP (readv, writev and ppoll: gVisor's
		// fdbased link), sockets, the ready and exit fds (os.NewFile
		// asks F_GETFL), the runtime's cgroup files (pread64), Go's
		// netpoller. No pipe or splice: the relay splices only between
		// two kernel sockets, and this process's forwards always have
		// gVisor on one side.
		unix.SYS_READ:        all,
		unix.SYS_WRITE:       all,
		unix.SYS_READV:       all,
		unix.SYS_WRITEV:      all,
		unix.SYS_PREAD64:     all,
		unix.SYS_CLOSE:       all,
		unix.SYS_PPOLL:       all,
		unix.SYS_EPOLL_PWAIT: all,
		unix.SYS_EPOLL_CTL:   all,
		unix.SYS_FCNTL: gseccomp.Or{
			gseccomp.PerArg{anyValue, eq(unix.F_GETFL)},
			// net.FilePacketConn of an ICMP socket: its own
			// descriptor, non-blocking.
			gseccomp.PerArg{anyValue, eq(unix.F_DUPFD_CLOEXEC)},
			gseccomp.PerArg{anyValue, eq(unix.F_SETFL)},
		},

		// Sockets: outbound TCP and UDP of the NAT and of the DNS
		// forwarder, ICMP echo sockets for ping past the gateway, the
		// forwards' listeners, the API socket's connections (accepted,
		// never made).
		unix.SYS_SOCKET:      inetSockets(),
		unix.SYS_BIND:        all,
		unix.SYS_LISTEN:      all,
		unix.SYS_CONNECT:     all,
		unix.SYS_ACCEPT4:     gseccomp.PerArg{anyValue, anyValue, anyValue, eq(unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC)},
		unix.SYS_GETSOCKNAME: all,
		unix.SYS_GETPEERNAME: all,
		unix.SYS_SETSOCKOPT:  socketOptions(),
		unix.SYS_GETSOCKOPT: gseccomp.Or{
			gseccomp.PerArg{anyValue, eq(unix.SOL_SOCKET), eq(unix.SO_ERROR)}, // a connect's outcome
			gseccomp.PerArg{anyValue, eq(unix.SOL_SOCKET), eq(unix.SO_TYPE)},  // net.FilePacketConn
		},
		unix.SYS_SHUTDOWN: all,
		unix.SYS_SENDTO:   all,
		unix.SYS_RECVFROM: all,

		// The one path: the API socket is removed on exit (through its
		// directory's descriptor under --enable-sandbox). Files only,
		// not directories.
		unix.SYS_UNLINKAT: gseccomp.PerArg{anyValue, anyValue, eq(0)},
	})
	rules.Set(unix.SYS_CLONE, threadClone())
	return cgoRules(rules)
}

// inetSockets allows the IPv4 and IPv6 TCP and UDP sockets Go's net
// package makes (the protocol is 0, or IPPROTO_TCP in its probe of the
// host's IPv6 support), and the unprivileged ICMP echo sockets that
// golang.org/x/net/icmp opens for ping (SOCK_DGRAM, no flags): no
// AF_UNIX, AF_NETLINK, AF_PACKET or raw socket, and no MPTCP (Go tries it
// first for a listener, then takes plain TCP, as slirp4netns's are).
func inetSockets() gseccomp.Or {
	const flags = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	var or gseccomp.Or
	for _, s := range []struct{ family, typ, proto uintptr }{
		{unix.AF_INET, unix.SOCK_STREAM | flags, 0},
		{unix.AF_INET, unix.SOCK_STREAM | flags, unix.IPPROTO_TCP},
		{unix.AF_INET, unix.SOCK_DGRAM | flags, 0},
		{unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP},
		{unix.AF_INET6, unix.SOCK_STREAM | flags, 0},
		{unix.AF_INET6, unix.SOCK_STREAM | flags, unix.IPPROTO_TCP},
		{unix.AF_INET6, unix.SOCK_DGRAM | flags, 0},
		{unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6},
	} {
		or = append(or, gseccomp.PerArg{eq(s.family), eq(s.typ), eq(s.proto)})
	}
	return or
}

// socketOptions are the options Go's net package sets on the sockets it
// makes, accepts and listens on.
func socketOptions() gseccomp.Or {
	var or gseccomp.Or
	for _, o := range []struct{ level, name uintptr }{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR},   // listeners
		{unix.SOL_SOCKET, unix.SO_BROADCAST},   // UDP sockets
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE},   // TCP connections
		{unix.IPPROTO_TCP, unix.TCP_NODELAY},   // TCP connections
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},  // TCP keepalive
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, // TCP keepalive
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT},   // TCP keepalive
		{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY},  // IPv6 sockets: dual stack or not
	} {
		or = append(or, gseccomp.PerArg{anyValue, eq(o.level), eq(o.name)})
	}
	return or
}
