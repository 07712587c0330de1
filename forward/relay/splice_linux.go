package relay

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kernel socket to kernel socket (the loopback fast path of published
// ports: a host client and a socket made inside the sandbox) bulk bytes
// move with splice(2) through a pipe, never copied into this process;
// small exchanges are copied, which is quicker for them (see smallRead).
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

// rawSocket returns c's RawConn when c is a kernel TCP socket.
func rawSocket(c net.Conn) (syscall.RawConn, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, false
	}
	return rc, true
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

// spliceHalf moves src to dst until src's end-of-stream (nil) or an error,
// and returns the bytes written.
func spliceHalf(dst, src syscall.RawConn) (written int64, err error) {
	var p *pipe
	defer func() {
		if p != nil {
			putPipe(p)
		}
	}()
	small := newSmallCopy(dst, src)
	bulk := false
	for {
		if !bulk {
			n, err := small.once()
			written += int64(n)
			if err != nil || n == 0 {
				return written, err
			}
			bulk = n == smallRead
			continue
		}
		// Fill: socket -> pipe. The pipe is empty here, so EAGAIN means
		// the socket has nothing; the pipe goes back while we wait.
		var n int64
		var serr error
		err = src.Read(func(fd uintptr) bool {
			if p == nil {
				if p, serr = getPipe(); serr != nil {
					return true
				}
			}
			n, serr = retryEINTR(func() (int64, error) {
				return unix.Splice(int(fd), nil, p.w, nil, spliceMax, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			})
			if serr == unix.EAGAIN {
				putPipe(p)
				p = nil
				return false
			}
			return true
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return written, err
		}
		if n == 0 {
			return written, nil // end of stream
		}
		bulk = n >= smallRead
		p.buffered += int(n)
		// Drain: pipe -> socket; EAGAIN means the socket's buffer is full.
		for p.buffered > 0 {
			m, werr := writeOnce(dst, func(fd int) (int64, error) {
				return unix.Splice(p.r, nil, fd, nil, p.buffered, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			})
			if werr != nil {
				return written, werr
			}
			if m == 0 {
				return written, errors.New("splice: wrote nothing")
			}
			p.buffered -= int(m)
			written += m
		}
	}
}

// smallCopy is one direction's small exchanges: it waits for src, reads
// what is there (up to smallRead) and writes it all to dst. Its callbacks
// for the runtime's poller are made once per connection: made anew for
// each read and write, as closures, they were most of the relay's
// allocations under keep-alive HTTP (18 a request and its answer).
type smallCopy struct {
	dst, src    syscall.RawConn
	buf         *[]byte // taken only once bytes are there
	n           int     // what the last read got
	pending     []byte  // of it, what dst has not taken yet
	err         error   // the last read's or write's
	read, write func(fd uintptr) bool
}

func newSmallCopy(dst, src syscall.RawConn) *smallCopy {
	c := &smallCopy{dst: dst, src: src}
	c.read, c.write = c.readFD, c.writeFD
	return c
}

// once moves what one wakeup of src brings, and returns its size: 0 at
// src's end of stream.
func (c *smallCopy) once() (int, error) {
	defer c.putBuf()
	c.n, c.err = 0, nil
	err := c.src.Read(c.read)
	if err == nil {
		err = c.err
	}
	if err != nil || c.n <= 0 {
		return 0, err
	}
	c.pending = (*c.buf)[:c.n]
	for len(c.pending) > 0 {
		if err := c.dst.Write(c.write); err != nil {
			return 0, err
		}
		if c.err != nil {
			return 0, c.err
		}
	}
	return c.n, nil
}

func (c *smallCopy) putBuf() {
	if c.buf != nil {
		smallBufs.Put(c.buf)
		c.buf, c.pending = nil, nil
	}
}

// readFD reads src once bytes are there; false (wait) on EAGAIN, when the
// buffer goes back while it waits.
func (c *smallCopy) readFD(fd uintptr) bool {
	if c.buf == nil {
		c.buf = smallBufs.Get().(*[]byte)
	}
	for {
		c.n, c.err = unix.Read(int(fd), *c.buf)
		if c.err != unix.EINTR {
			break
		}
	}
	if c.err == unix.EAGAIN {
		c.putBuf()
		return false
	}
	return true
}

// writeFD writes once what is pending; false (wait) when dst is full.
func (c *smallCopy) writeFD(fd uintptr) bool {
	for {
		m, err := unix.Write(int(fd), c.pending)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return false
		}
		c.err = err
		if err == nil {
			c.pending = c.pending[m:]
		}
		return true
	}
}

// retryEINTR calls op again for as long as a signal interrupts it.
func retryEINTR[T any](op func() (T, error)) (T, error) {
	for {
		v, err := op()
		if err != unix.EINTR {
			return v, err
		}
	}
}

// writeOnce waits until dst takes bytes, then writes once with op, which
// gets dst's descriptor and returns how many bytes it wrote.
func writeOnce[T int | int64](dst syscall.RawConn, op func(fd int) (T, error)) (T, error) {
	var n T
	var serr error
	err := dst.Write(func(fd uintptr) bool {
		n, serr = retryEINTR(func() (T, error) { return op(int(fd)) })
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	return n, err
}
