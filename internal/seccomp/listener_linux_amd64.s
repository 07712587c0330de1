// The thread that answers the filter's notifications (listener_linux_amd64.go
// says why it is not a goroutine). It runs no Go code and touches no
// memory but its page, whose layout listener_linux_amd64.go defines (the
// offsets below), and makes only calls on every role's list.

#include "textflag.h"

#define SYS_read 0
#define SYS_write 1
#define SYS_close 3
#define SYS_rt_sigprocmask 14
#define SYS_ioctl 16
#define SYS_clone 56
#define SYS_exit 60

#define SIG_SETMASK 2
#define EINTR 4
#define ENOENT 2

#define NOTIF_RECV 0xc0502100
#define NOTIF_SEND 0xc0182101

// The page.
#define NOTIF 0
#define NOTIF_REPORT 8
#define RESP 128
#define START_FD 192
#define REPORT_FD 196
#define LISTENER_FD 200
#define CLONE_FLAGS 208
#define ALL_SIGNALS 256
#define OLD_SIGNALS 264
#define PAGE 4096

// func startListener(page uintptr) (tid int64)
TEXT ·startListener(SB),NOSPLIT,$0-16
	MOVQ page+0(FP), R12
	// Every signal blocked on this thread while it clones: the new
	// thread starts with them all blocked, as no Go handler can run on
	// it (the runtime's newosproc does the same).
	MOVQ $SIG_SETMASK, DI
	LEAQ ALL_SIGNALS(R12), SI
	LEAQ OLD_SIGNALS(R12), DX
	MOVQ $8, R10
	MOVQ $SYS_rt_sigprocmask, AX
	SYSCALL
	CMPQ AX, $0
	JNE done
	// clone(flags, stack, 0, 0, 0), with a Go thread's flags (the page
	// has them): the stack is the page's end, unused (no calls), but not
	// the caller's.
	MOVQ CLONE_FLAGS(R12), DI
	LEAQ PAGE(R12), SI
	XORQ DX, DX
	XORQ R10, R10
	XORQ R8, R8
	MOVQ $SYS_clone, AX
	SYSCALL
	CMPQ AX, $0
	JEQ child
	MOVQ AX, R13
	MOVQ $SIG_SETMASK, DI
	LEAQ OLD_SIGNALS(R12), SI
	XORQ DX, DX
	MOVQ $8, R10
	MOVQ $SYS_rt_sigprocmask, AX
	SYSCALL
	MOVQ R13, AX
done:
	MOVQ AX, tid+8(FP)
	RET

child:
	// The listener's descriptor comes through the start pipe once the
	// filter is on; its end without one (no filter, or one without a
	// listener) ends the thread, which closes its pipes' ends.
	MOVL START_FD(R12), DI
	LEAQ LISTENER_FD(R12), SI
	MOVQ $4, DX
	MOVQ $SYS_read, AX
	SYSCALL
	MOVQ AX, BX
	MOVL START_FD(R12), DI
	MOVQ $SYS_close, AX
	SYSCALL
	CMPQ BX, $4
	JNE closereport

recv:
	// NOTIF_RECV wants a zeroed struct seccomp_notif (80 bytes).
	XORQ AX, AX
	MOVQ AX, 0(R12)
	MOVQ AX, 8(R12)
	MOVQ AX, 16(R12)
	MOVQ AX, 24(R12)
	MOVQ AX, 32(R12)
	MOVQ AX, 40(R12)
	MOVQ AX, 48(R12)
	MOVQ AX, 56(R12)
	MOVQ AX, 64(R12)
	MOVQ AX, 72(R12)
	MOVL LISTENER_FD(R12), DI
	MOVL $NOTIF_RECV, SI
	LEAQ NOTIF(R12), DX
	MOVQ $SYS_ioctl, AX
	SYSCALL
	// ENOENT: the caller was interrupted before we took its call; it
	// makes it again.
	CMPQ AX, $-EINTR
	JEQ recv
	CMPQ AX, $-ENOENT
	JEQ recv
	CMPQ AX, $0
	JNE broken

	// Answer EPERM: struct seccomp_notif_resp{id, val 0, error -EPERM,
	// flags 0}. An error (ENOENT: the caller was interrupted) needs
	// nothing: the call is made again.
	MOVQ NOTIF(R12), AX
	MOVQ AX, RESP(R12)
	MOVQ $0, (RESP+8)(R12)
	MOVL $-1, (RESP+16)(R12)
	MOVL $0, (RESP+20)(R12)
	MOVL LISTENER_FD(R12), DI
	MOVL $NOTIF_SEND, SI
	LEAQ RESP(R12), DX
	MOVQ $SYS_ioctl, AX
	SYSCALL

	// Report pid, flags, nr and arch (16 bytes, one write, atomic on a
	// pipe); a full pipe drops it (non-blocking).
	MOVL REPORT_FD(R12), DI
	LEAQ NOTIF_REPORT(R12), SI
	MOVQ $16, DX
	MOVQ $SYS_write, AX
	SYSCALL
	JMP recv

broken:
	// A listener that cannot be read is closed, and so is the report
	// pipe: a denied call then fails with ENOSYS instead of waiting for
	// an answer, and the reporter says so.
	MOVL LISTENER_FD(R12), DI
	MOVQ $SYS_close, AX
	SYSCALL
closereport:
	MOVL REPORT_FD(R12), DI
	MOVQ $SYS_close, AX
	SYSCALL
exit:
	MOVQ $0, DI
	MOVQ $SYS_exit, AX
	SYSCALL
	JMP exit
