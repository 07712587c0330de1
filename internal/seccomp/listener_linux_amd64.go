package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	"gvisor.dev/gvisor/pkg/bpf"
	gseccomp "gvisor.dev/gvisor/pkg/seccomp"
)

// The listener. The filter's default action is a notification
// (SECCOMP_RET_USER_NOTIF): the call off the list waits until the process
// answers it through the listener's descriptor, which it does with EPERM,
// as the filter without a listener answers itself, and the call's number
// goes to the log (Filter.Install).
//
// What answers is not a goroutine. A call made without leaving its P
// (the runtime's own, and the syscall package's RawSyscall: socket,
// pipe2, uname, ...) keeps that P while it waits, and a goroutine whose
// ioctl returned needs a P before it can answer: with GOMAXPROCS=1, or
// while a stop of the world waits for the caller's P, the process hangs
// for good (measured: one such call with GOMAXPROCS=1; with 2, a garbage
// collector running, within 20000 calls). It is a thread the runtime does
// not know, started by listener_linux_amd64.s, which runs no Go code: it
// reads the listener's descriptor from a pipe, then loops on NOTIF_RECV,
// NOTIF_SEND (EPERM) and a 16-byte write of the caller's pid and number
// to a report pipe, which a goroutine reads.

// The listener thread's page (listener_linux_amd64.s has the same
// offsets).
const (
	pageStartFD    = 192 // the start pipe's read end
	pageReportFD   = 196 // the report pipe's write end
	pageCloneFlags = 208
	pageAllSignals = 256
	pageSize       = 4096
)

// startListener clones the listener thread on page (its buffers, its
// pipes, its stack) and returns its tid, or -errno.
func startListener(page uintptr) (tid int64)

// listenerFlags: a listener, and TSYNC's failure as ESRCH, which the
// kernel wants with both (5.7 and later); EINVAL from an older kernel.
const listenerFlags = linux.SECCOMP_FILTER_FLAG_TSYNC | linux.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH

// install puts instrs on with a listener, whose thread answers denied
// calls with EPERM and hands their pid and number to rep (on a goroutine
// of its own); on a kernel that gives no listener, with EPERM as the
// filter's own answer, and nothing named.
func install(instrs []bpf.Instruction, rep *reporter) error {
	start, report, err := newListener()
	if err != nil {
		return err
	}
	fd, err := setFilter(instrs, listenerFlags)
	// EINVAL: a kernel older than 5.7. EBUSY: a filter this process
	// inherited has a listener (a daemon its supervisor started), and
	// the kernel gives one filter chain one listener: this filter then
	// answers EPERM itself, which outranks the older one's notification.
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBUSY) {
		start.Close() // the thread ends
		report.Close()
		return gseccomp.SetFilter(withoutListener(instrs))
	}
	if err != nil {
		start.Close()
		report.Close()
		return err
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(fd))
	_, err = start.Write(b[:])
	start.Close()
	if err != nil {
		// The filter is on and nothing will answer: close the listener,
		// so that denied calls fail with ENOSYS rather than hang.
		unix.Close(fd)
		report.Close()
		return fmt.Errorf("start the listener of denied calls: %w", err)
	}
	go readDenials(report, rep)
	return nil
}

// newListener starts the listener thread, waiting for the descriptor
// through start; report is where its calls come out.
func newListener() (start, report *os.File, err error) {
	page, err := unix.Mmap(-1, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, fmt.Errorf("the listener's page: %w", err)
	}
	var sp, rp [2]int
	if err := unix.Pipe2(sp[:], unix.O_CLOEXEC); err != nil {
		unix.Munmap(page)
		return nil, nil, fmt.Errorf("the listener's pipe: %w", err)
	}
	if err := unix.Pipe2(rp[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(sp[0])
		unix.Close(sp[1])
		unix.Munmap(page)
		return nil, nil, fmt.Errorf("the listener's pipe: %w", err)
	}
	binary.NativeEndian.PutUint32(page[pageStartFD:], uint32(sp[0]))
	binary.NativeEndian.PutUint32(page[pageReportFD:], uint32(rp[1]))
	binary.NativeEndian.PutUint64(page[pageCloneFlags:], goThread)
	binary.NativeEndian.PutUint64(page[pageAllSignals:], ^uint64(0))
	// The thread owns sp[0] and rp[1] and closes them when it ends; the
	// page is its until the process ends.
	if tid := startListener(uintptr(unsafe.Pointer(&page[0]))); tid < 0 {
		for _, fd := range []int{sp[0], sp[1], rp[0], rp[1]} {
			unix.Close(fd)
		}
		unix.Munmap(page)
		return nil, nil, fmt.Errorf("start the listener thread: %w", unix.Errno(-tid))
	}
	return os.NewFile(uintptr(sp[1]), "seccomp-start"), os.NewFile(uintptr(rp[0]), "seccomp-denied"), nil
}

// setFilter is gVisor's SetFilter with flags: no_new_privs on this
// thread (TSYNC copies it to the others), then the filter on every
// thread, which returns the listener's descriptor.
func setFilter(instrs []bpf.Instruction, flags uintptr) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, _, e := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return -1, e
	}
	prog := unix.SockFprog{Len: uint16(len(instrs)), Filter: (*unix.SockFilter)(unsafe.Pointer(&instrs[0]))}
	fd, _, e := unix.RawSyscall(unix.SYS_SECCOMP, linux.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(instrs)
	if e == unix.ESRCH {
		return -1, errors.New("a thread could not take the filter (TSYNC)")
	}
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// readDenials hands each call the listener thread answered to rep; the
// report pipe's end means the thread stopped.
func readDenials(report *os.File, rep *reporter) {
	defer report.Close()
	var rec [16]byte // struct seccomp_notif's pid, flags, nr, arch
	for {
		if _, err := io.ReadFull(report, rec[:]); err != nil {
			rep.stopped(err)
			return
		}
		rep.denied(int(binary.NativeEndian.Uint32(rec[0:])), int(int32(binary.NativeEndian.Uint32(rec[8:]))))
	}
}
