package relay

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel socket to kernel socket (the loopback fast path of published
// ports) is relayed by one event loop for the whole process, pasta's way:
// a goroutine locked to its thread waits in epoll_wait on every relayed
// socket, edge-triggered, and moves whatever each wakeup brings before it
// waits again. No goroutine is woken per message: through Go's poller each
// message cost a goroutine's wakeup and, with a processor idle, a second
// thread woken to look for work (the scheduler's findRunnable and futex
// were 28% of the daemon's CPU under keep-alive HTTP; see
// docs/ARCHITECTURE.md, Measured facts: Event-loop relay).
//
// Small exchanges are read into the loop's one scratch buffer and written
// at once; only what the destination does not take is kept, per
// direction. A read that fills the scratch buffer turns the direction to
// splicing through a pipe until a read brings less again.

// turnBudget is the most one direction moves in one turn of the loop
// before the other ready connections get theirs.
const turnBudget = 1 << 20

// readEvents is what the loop watches every socket for, edge-triggered;
// EPOLLOUT is added only while a write waits (watchRoom).
const readEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET

// loopEvents is how many events one epoll_wait returns at most.
const loopEvents = 128

// flow is one direction of a relayed pair: src's bytes to dst.
type flow struct {
	src, dst int
	pending  []byte // read from src, not yet taken by dst (small mode)
	pendBuf  *[]byte
	pipe     *pipe // bulk mode: bytes move src -> pipe -> dst
	bulk     bool
	hangup   bool // src reported its peer's end: read on until it shows
	shut     bool // src's peer has ended its side (FIN, no error)
	blocked  bool // bytes wait for dst to take them
	outArmed bool // dst is watched for room (EPOLLOUT)
	ended    bool // src's end of stream passed on as dst's half-close
	written  int64
}

// pair is one relayed connection: a's bytes to b (ab) and back (ba).
type pair struct {
	id     uint64
	ab, ba flow
	queued bool                   // in the loop's ready queue
	done   func(aToB, bToA int64) // called once the loop has closed both sockets
}

type eventLoop struct {
	epfd    int
	scratch []byte

	// By id: an event names its pair or acceptor by id, not by
	// descriptor, whose number a new socket may reuse.
	mu        sync.Mutex
	pairs     map[uint64]*pair
	acceptors map[uint64]*acceptor
	nextID    uint64

	ready  []*pair // pairs whose last turn ran out of budget
	events [loopEvents]unix.EpollEvent
}

var theLoop struct {
	sync.Mutex
	l *eventLoop
}

// sharedLoop starts the process's event loop on first use; a failure
// (out of descriptors) is tried again by the next connection.
func sharedLoop() (*eventLoop, error) {
	theLoop.Lock()
	defer theLoop.Unlock()
	if theLoop.l == nil {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("relay: event loop: %w", err)
		}
		theLoop.l = &eventLoop{epfd: epfd, scratch: make([]byte, smallRead), pairs: make(map[uint64]*pair), acceptors: make(map[uint64]*acceptor)}
		go theLoop.l.run()
	}
	return theLoop.l, nil
}

// loopTCP hands a and b, two kernel TCP sockets (kernelSocket), to the
// shared loop, which calls done from its thread once both directions have
// ended (done must not block); false when the loop cannot take them (a
// and b are then untouched).
func loopTCP(a, b net.Conn, done func(aToB, bToA int64)) bool {
	l, err := sharedLoop()
	if err != nil {
		return false
	}
	fa, err := takeFD(a)
	if err != nil {
		return false
	}
	fb, err := takeFD(b)
	if err != nil {
		// a's is taken already; out of descriptors, most likely: the
		// connection ends here.
		unix.Close(fa)
		a.Close()
		b.Close()
		done(0, 0)
		return true
	}
	// The loop owns the descriptors; Go's poller lets its own go.
	for _, c := range []net.Conn{a, b} {
		if _, ok := c.(*net.TCPConn); ok {
			c.Close()
		}
	}
	p := &pair{ab: flow{src: fa, dst: fb}, ba: flow{src: fb, dst: fa}, done: done}
	// A's first bytes (a client's request, there by the time its
	// connection is accepted and relayed) go here, before the loop knows
	// the pair: that saves the loop a wakeup per connection.
	buf := smallBufs.Get().(*[]byte)
	_, err = p.ab.move(*buf)
	smallBufs.Put(buf)
	if err != nil {
		p.release()
		done(p.ab.written, 0)
		return true
	}
	events := [2]uint32{readEvents, readEvents}
	if p.ab.blocked {
		// The first bytes already wait for b to take them.
		events[1] |= unix.EPOLLOUT
		p.ab.outArmed = true
	}
	// From here on p is the loop's (the table's lock orders what was done
	// to it before).
	l.mu.Lock()
	l.nextID++
	p.id = l.nextID
	l.pairs[p.id] = p
	l.mu.Unlock()
	for side, fd := range [2]int{fa, fb} {
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, eventFor(p.id, side, events[side])); err != nil {
			// Cannot happen for a fresh socket. Shut both down: if
			// the first is watched, the loop sees its end and ends
			// the pair; if not, nothing refers to the pair.
			if side == 1 {
				unix.Shutdown(fa, unix.SHUT_RDWR)
				unix.Shutdown(fb, unix.SHUT_RDWR)
				return true
			}
			l.mu.Lock()
			delete(l.pairs, p.id)
			l.mu.Unlock()
			p.release()
			done(p.ab.written, 0)
			return true
		}
	}
	return true
}

// eventFor is the epoll registration of side (0: a, 1: b) of pair id:
// the event's data carries id<<1 | side, split over its two 32-bit words.
func eventFor(id uint64, side int, events uint32) *unix.EpollEvent {
	key := id<<1 | uint64(side)
	return &unix.EpollEvent{Events: events, Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))}
}

// eventKey is eventFor's id<<1 | side back from an event.
func eventKey(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// takeFD is c's socket descriptor for the loop: a *net.TCPConn's
// duplicate (the same socket, already non-blocking; c is closed once both
// sides are taken) or a DetachedSocket's own.
func takeFD(c net.Conn) (int, error) {
	if d, ok := c.(DetachedSocket); ok {
		if fd, ok := d.TakeFD(); ok {
			return fd, nil
		}
		return -1, errors.New("relay: the socket was used as a connection")
	}
	return dupSocket(c.(*net.TCPConn))
}

// dupSocket is a duplicate of s's descriptor (a *net.TCPConn's or a
// *net.TCPListener's): the same socket, already non-blocking.
func dupSocket(s syscall.Conn) (int, error) {
	rc, err := s.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	return fd, derr
}

func (l *eventLoop) run() {
	// One thread waits and moves: nothing is handed between threads. A
	// loop waiting in Go's poller instead (its epoll descriptor is
	// pollable) measured slower (Measured facts: Event-loop relay).
	runtime.LockOSThread()
	for {
		timeout := -1
		if len(l.ready) > 0 {
			timeout = 0
		}
		n, err := epollPwait(l.epfd, l.events[:], timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			panic("relay: epoll_wait: " + err.Error()) // the descriptor is ours; this cannot fail
		}
		// Pairs left over from the last round go first, then the new events.
		queued := l.ready
		l.ready = nil
		for _, p := range queued {
			p.queued = false
			l.turn(p, moveAB|moveBA)
		}
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			key := eventKey(ev)
			l.mu.Lock()
			p := l.pairs[key>>1]
			var a *acceptor
			if p == nil { // pairs' events are nearly all of them
				a = l.acceptors[key>>1]
			}
			l.mu.Unlock()
			if a != nil {
				a.accept()
				continue
			}
			if p == nil {
				continue // ended earlier in this batch
			}
			if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				f := &p.ab
				if key&1 == 1 {
					f = &p.ba
				}
				f.hangup = true
				f.shut = ev.Events&unix.EPOLLRDHUP != 0 && ev.Events&unix.EPOLLERR == 0
			}
			if !p.queued {
				l.turn(p, concerns(key&1, ev.Events))
			}
		}
	}
}

// The directions of a pair that a turn moves.
const (
	moveAB = 1 << iota
	moveBA
)

// concerns is the directions an event on side (0: a, 1: b) of a pair
// wakes: its bytes (or end) feed one, room in it drains the other, an
// error or hangup ends both. Moving only those spares a read that would
// find nothing: a keep-alive exchange wakes each side in turn.
func concerns(side uint64, events uint32) int {
	if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		return moveAB | moveBA
	}
	feeds, drains := moveAB, moveBA
	if side == 1 {
		feeds, drains = moveBA, moveAB
	}
	which := 0
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
		which |= feeds
	}
	if events&unix.EPOLLOUT != 0 {
		which |= drains
	}
	return which
}

// turn moves what the directions which of p have, up to turnBudget
// each, and ends p once both are done or one failed.
func (l *eventLoop) turn(p *pair, which int) {
	var moreAB, moreBA bool
	var errAB, errBA error
	if which&moveAB != 0 {
		moreAB, errAB = p.ab.move(l.scratch)
	}
	if which&moveBA != 0 {
		moreBA, errBA = p.ba.move(l.scratch)
	}
	if errAB == nil && errBA == nil {
		errAB, errBA = l.watchRoom(p, 1, &p.ab), l.watchRoom(p, 0, &p.ba)
	}
	switch {
	case errAB != nil || errBA != nil:
		// A reset or a broken socket: close both, so the other side
		// learns at once, as the goroutine relay did.
		l.end(p)
	case p.ab.ended && p.ba.ended:
		l.end(p)
	case moreAB || moreBA:
		p.queued = true
		l.ready = append(l.ready, p)
	}
}

// move runs one direction until src has nothing (EAGAIN), dst is full,
// the budget is spent (more), src ended, or an error; it reads into
// scratch.
func (f *flow) move(scratch []byte) (more bool, err error) {
	f.blocked = false
	if f.ended {
		return false, nil
	}
	moved := 0
	for moved < turnBudget {
		// What is held goes first.
		if len(f.pending) > 0 {
			m, err := retryEINTR(func() (int, error) { return unix.Write(f.dst, f.pending) })
			if err == unix.EAGAIN {
				f.blocked = true
				return false, nil
			}
			if err != nil {
				return false, err
			}
			f.pending = f.pending[m:]
			f.written += int64(m)
			moved += m
			if len(f.pending) > 0 {
				continue
			}
			smallBufs.Put(f.pendBuf)
			f.pendBuf, f.pending = nil, nil
		}
		if f.pipe != nil && f.pipe.buffered > 0 {
			m, err := retryEINTR(func() (int64, error) {
				return unix.Splice(f.pipe.r, nil, f.dst, nil, f.pipe.buffered, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			})
			if err == unix.EAGAIN {
				f.blocked = true
				return false, nil
			}
			if err != nil {
				return false, err
			}
			f.pipe.buffered -= int(m)
			f.written += m
			moved += int(m)
			continue
		}
		if f.bulk {
			if f.pipe == nil {
				if f.pipe, err = getPipe(); err != nil {
					return false, err
				}
			}
			n, err := retryEINTR(func() (int64, error) {
				return unix.Splice(f.src, nil, f.pipe.w, nil, spliceMax, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			})
			if err == unix.EAGAIN {
				// Drained: the pipe goes back while the socket is idle.
				putPipe(f.pipe)
				f.pipe = nil
				return false, nil
			}
			if err != nil {
				return false, err
			}
			if n == 0 {
				return false, f.endOfStream()
			}
			f.pipe.buffered += int(n)
			f.bulk = n >= smallRead
			continue
		}
		n, err := retryEINTR(func() (int, error) { return unix.Read(f.src, scratch) })
		if err == unix.EAGAIN {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if n == 0 {
			return false, f.endOfStream()
		}
		f.bulk = n == len(scratch)
		m, err := retryEINTR(func() (int, error) { return unix.Write(f.dst, scratch[:n]) })
		if err == unix.EAGAIN {
			m, err = 0, nil
		}
		if err != nil {
			return false, err
		}
		f.written += int64(m)
		moved += m
		if m < n {
			// dst is full: keep the rest until it takes more.
			f.pendBuf = smallBufs.Get().(*[]byte)
			f.pending = (*f.pendBuf)[:copy(*f.pendBuf, scratch[m:n])]
			f.blocked = true
			return false, nil
		}
		switch {
		case !f.bulk && f.shut:
			// A short read took all the socket had, and its peer's FIN
			// came in order after every byte: the end of stream, with
			// no read to find it (a server's answer and its close come
			// in one event).
			return false, f.endOfStream()
		case !f.bulk && !f.hangup:
			// A short read took all the socket had: what arrives later
			// (its end of stream too) is a new edge, so no read that
			// would find nothing.
			return false, nil
		}
	}
	return true, nil
}

// watchRoom has f's dst, side dstSide of p, watched for room only while
// f's bytes wait for it: watched all the time, every acknowledgement that
// frees room in its send buffer would wake the loop.
func (l *eventLoop) watchRoom(p *pair, dstSide int, f *flow) error {
	if f.blocked == f.outArmed {
		return nil
	}
	ev := uint32(readEvents)
	if f.blocked {
		ev |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, f.dst, eventFor(p.id, dstSide, ev)); err != nil {
		return fmt.Errorf("relay: watch a socket: %w", err)
	}
	f.outArmed = f.blocked
	return nil
}

// endOfStream passes src's end on as dst's half-close.
func (f *flow) endOfStream() error {
	f.ended = true
	if f.pipe != nil {
		putPipe(f.pipe)
		f.pipe = nil
	}
	if err := unix.Shutdown(f.dst, unix.SHUT_WR); err != nil && err != unix.ENOTCONN {
		return err
	}
	return nil
}

// end closes both sockets of p and tells its caller.
func (l *eventLoop) end(p *pair) {
	l.mu.Lock()
	delete(l.pairs, p.id)
	l.mu.Unlock()
	if p.queued {
		l.dequeue(p)
	}
	p.release()
	p.done(p.ab.written, p.ba.written)
}

// release gives back p's buffers and pipes and closes its sockets.
func (p *pair) release() {
	for _, f := range []*flow{&p.ab, &p.ba} {
		if f.pendBuf != nil {
			smallBufs.Put(f.pendBuf)
			f.pendBuf, f.pending = nil, nil
		}
		if f.pipe != nil {
			putPipe(f.pipe)
			f.pipe = nil
		}
	}
	unix.Close(p.ab.src)
	unix.Close(p.ba.src)
}

func (l *eventLoop) dequeue(p *pair) {
	for i, q := range l.ready {
		if q == p {
			l.ready = append(l.ready[:i], l.ready[i+1:]...)
			break
		}
	}
	p.queued = false
}

// epollPwait is epoll_wait through epoll_pwait with no signal mask, the
// one the syscall filters allow (and arm64's only one); x/sys's
// EpollWait calls epoll_wait on amd64.
func epollPwait(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
