package relay

import (
	"sync"

	"golang.org/x/sys/unix"
)

// Kernel socket to kernel socket (the loopback fast path of published
// ports: a host client and a socket made inside the sandbox) the event
// loop moves bulk bytes with splice(2) through a pipe, never copied into
// this process; small exchanges are copied, which is quicker for them
// (see smallRead).
//
// Go's own TCPConn.ReadFrom splices too, but it holds its pipe for the
// whole life of the connection, idle or not: two pipes (four descriptors,
// and pipe pages counted against the user's pipe-user-pages-soft) for
// every open connection. Here a pipe is taken when bytes are there and
// given back once it is drained and the source has nothing more, so idle
// connections hold none (as copyPooled holds no buffer).

// pipeSize is the capacity asked for each pipe (F_SETPIPE_SZ). Relaying
// between two loopback TCP sockets (BenchmarkRelay, 2 cores, medians of
// 4): Linux's default 64 KiB pipe moved 1.8 GB/s, 256 KiB 2.7 GB/s, 1 MiB
// 2.3 GB/s, and a copy through a 256 KiB buffer 1.55 GB/s. Pipe capacity
// counts against the user's pipe-user-pages-soft (16384 pages for all of
// the user's pipes); past it the kernel refuses the size and gives new
// pipes 2 pages, which still work, slower. Idle connections hold no pipe
// and at most maxIdlePipes (1024 pages) are kept.
const pipeSize = 256 << 10

// spliceMax is how much one splice asks to move: whatever the pipe takes.
const spliceMax = 1 << 20

// maxIdlePipes bounds the pipes kept for reuse (each is 2 descriptors).
const maxIdlePipes = 16

type pipe struct {
	r, w     int
	buffered int // bytes in the pipe
}

var pipes struct {
	sync.Mutex
	idle []*pipe
}

func getPipe() (*pipe, error) {
	pipes.Lock()
	if n := len(pipes.idle); n > 0 {
		p := pipes.idle[n-1]
		pipes.idle = pipes.idle[:n-1]
		pipes.Unlock()
		return p, nil
	}
	pipes.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize) // best effort
	return &pipe{r: fds[0], w: fds[1]}, nil
}

// putPipe keeps an empty pipe for reuse, or closes it. A pipe that still
// holds bytes (its connection broke) is closed: they are lost anyway.
func putPipe(p *pipe) {
	if p.buffered == 0 {
		pipes.Lock()
		if len(pipes.idle) < maxIdlePipes {
			pipes.idle = append(pipes.idle, p)
			pipes.Unlock()
			return
		}
		pipes.Unlock()
	}
	unix.Close(p.r)
	unix.Close(p.w)
}

// IdlePipes is how many pipes are kept for reuse (2 descriptors each).
func IdlePipes() int {
	pipes.Lock()
	defer pipes.Unlock()
	return len(pipes.idle)
}

// smallRead is what one wakeup reads into a buffer before the relay
// decides to splice: a wakeup that brings less (an interactive exchange, a
// request) is copied with one read and one write, cheaper than the pipe's
// two splices; one that fills it turns to splicing until a wakeup brings
// less again. Measured with bench/rtt's ping (16-byte ping-pong through
// netns-run, 10 rounds alternating): p50 107 us against 117 us splicing
// everything (a plain copy: 101), with the bulk rate of splicing.
const smallRead = 16 << 10

var smallBufs = sync.Pool{New: func() any { b := make([]byte, smallRead); return &b }}

// retryEINTR calls op again for as long as a signal interrupts it.
func retryEINTR[T any](op func() (T, error)) (T, error) {
	for {
		v, err := op()
		if err != unix.EINTR {
			return v, err
		}
	}
}
