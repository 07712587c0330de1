package sandbox

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ptyRelay is the terminal of an `exec -t` or `run -t`: a new pty whose
// slave the process gets (no other session holds it, so it can become its
// controlling terminal) and whose master is copied to and from the
// client's stdin and stdout, as docker exec -t does. Without stdin (run -t
// without -i, or detached) nothing is copied in and the process waits for
// input that does not come, as under Docker.
type ptyRelay struct {
	master *os.File // non-blocking, in Go's poller
	slave  *os.File
	in     *os.File
	out    *os.File
	inFD   int
	raw    bool           // in is a terminal we put in raw mode
	last   byte           // the last byte copied in
	saved  *unix.Termios  // its settings before
	wakeR  int            // stops the input copy
	wakeW  int            //
	wg     sync.WaitGroup // the two copies
	outEnd chan struct{}  // closed when the output copy ends
	once   sync.Once

	mu    sync.Mutex
	sinks []*os.File // attached clients' stdouts (attach), besides out
}

func newPTYRelay(in, out *os.File) (*ptyRelay, error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("exec -t: open a pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, fmt.Errorf("exec -t: unlock the pty: %w", err)
	}
	sfd, err := openSlave(mfd)
	if err != nil {
		unix.Close(mfd)
		return nil, fmt.Errorf("exec -t: open the pty's terminal: %w", err)
	}
	r := &ptyRelay{
		master: os.NewFile(uintptr(mfd), "/dev/ptmx"),
		slave:  os.NewFile(uintptr(sfd), "pty"),
		in:     in, out: out, inFD: -1, wakeR: -1, wakeW: -1,
		outEnd: make(chan struct{}),
	}
	if in != nil {
		r.inFD = rawFD(in)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		r.master.Close()
		r.slave.Close()
		return nil, fmt.Errorf("exec -t: %w", err)
	}
	r.wakeR, r.wakeW = p[0], p[1]
	r.resize()
	if t, err := unix.IoctlGetTermios(r.inFD, unix.TCGETS); in != nil && err == nil {
		saved := *t
		makeRaw(t)
		if unix.IoctlSetTermios(r.inFD, unix.TCSETS, t) == nil {
			r.raw, r.saved = true, &saved
		}
	}
	return r, nil
}

// openSlave opens the pty's terminal without a path lookup when the kernel
// can (TIOCGPTPEER, Linux 4.13), else by /dev/pts/N.
func openSlave(mfd int) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno == 0 {
		return int(fd), nil
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		return -1, err
	}
	return unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
}

// rawFD is f's descriptor, taken without changing its blocking mode. It
// stays valid while the caller keeps f open.
func rawFD(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(u uintptr) { fd = int(u) })
	}
	return fd
}

// makeRaw is cfmakeraw(3).
func makeRaw(t *unix.Termios) {
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
}

// resize gives the pty the client terminal's window size.
func (r *ptyRelay) resize() {
	for _, f := range []*os.File{r.out, r.in} {
		if f == nil {
			continue
		}
		if ws, err := unix.IoctlGetWinsize(rawFD(f), unix.TIOCGWINSZ); err == nil {
			unix.IoctlSetWinsize(rawFD(r.master), unix.TIOCSWINSZ, ws)
			return
		}
	}
}

// start copies stdin to the pty and the pty to stdout.
func (r *ptyRelay) start() {
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		defer close(r.outEnd)
		r.copyOut()
	}()
	if r.in == nil {
		r.wg.Done()
		return
	}
	go func() {
		defer r.wg.Done()
		r.copyIn()
	}()
}

// copyOut copies the pty to out and to every attached client's stdout
// until no process holds the pty (EIO) or close closes it.
func (r *ptyRelay) copyOut() {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.master.Read(buf)
		if n > 0 {
			if r.out != nil {
				r.out.Write(buf[:n])
			}
			r.mu.Lock()
			sinks := r.sinks
			r.mu.Unlock()
			for _, s := range sinks {
				s.Write(buf[:n]) // a client gone ends its session by its socket
			}
		}
		if err != nil {
			return
		}
	}
}

// addSink makes the output copy write to f too, and gives the pty the
// size of the terminal f is; removeSink stops it.
func (r *ptyRelay) addSink(f *os.File) {
	r.mu.Lock()
	r.sinks = append(r.sinks[:len(r.sinks):len(r.sinks)], f) // a new array: copyOut holds the old one
	r.mu.Unlock()
	r.resizeFrom(f)
}

func (r *ptyRelay) removeSink(f *os.File) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := make([]*os.File, 0, len(r.sinks))
	for _, s := range r.sinks {
		if s != f {
			kept = append(kept, s)
		}
	}
	r.sinks = kept
}

// resizeFrom gives the pty the window size of the terminal f is, if it is one.
func (r *ptyRelay) resizeFrom(f *os.File) {
	if ws, err := unix.IoctlGetWinsize(rawFD(f), unix.TIOCGWINSZ); err == nil {
		unix.IoctlSetWinsize(rawFD(r.master), unix.TIOCSWINSZ, ws)
	}
}

// copyIn copies stdin to the pty until stdin ends or close wakes it.
func (r *ptyRelay) copyIn() {
	end := copyInput(r.inFD, r.wakeR, r.master, nil, func(b []byte) { r.last = b[len(b)-1] })
	if end == inputEnded && !r.raw {
		// End of input: the terminal's end-of-file character, which a
		// program reading lines takes as EOF.
		eof := []byte{4}
		if r.last != 0 && r.last != '\n' {
			eof = []byte{4, 4} // the first ends the pending line
		}
		r.master.Write(eof)
	}
}

// How copyInput ended.
const (
	inputEnded    = iota // end of file, or a read error
	inputWoken           // wake became readable, or dst failed
	inputDetached        // the detach keys were typed
)

// copyInput copies inFD to dst until inFD ends, wake is readable, or the
// detach keys (esc, if not nil) are typed; copied, if not nil, sees each
// chunk written. It polls, so that a blocking inFD (a terminal, whose
// mode is shared with its other holders) does not pin it.
func copyInput(inFD, wake int, dst *os.File, esc *escaper, copied func([]byte)) int {
	buf := make([]byte, 32<<10)
	for {
		fds := []unix.PollFd{{Fd: int32(inFD), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return inputEnded
		}
		if fds[1].Revents != 0 {
			return inputWoken
		}
		if fds[0].Revents&unix.POLLNVAL != 0 {
			return inputEnded
		}
		if fds[0].Revents == 0 {
			continue
		}
		n, err := unix.Read(inFD, buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if n <= 0 {
			return inputEnded
		}
		p, detached := buf[:n], false
		if esc != nil {
			p, detached = esc.feed(p)
		}
		if len(p) > 0 {
			if _, err := dst.Write(p); err != nil {
				return inputWoken
			}
			if copied != nil {
				copied(p)
			}
		}
		if detached {
			return inputDetached
		}
	}
}

// drain waits (up to d) for the output copy to take what the process
// wrote: it ends when the last holder of the pty closes it.
func (r *ptyRelay) drain(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.outEnd:
	case <-t.C:
	}
}

// close stops the copies, closes the pty and restores the terminal.
func (r *ptyRelay) close() {
	r.once.Do(func() {
		unix.Write(r.wakeW, []byte{0})
		r.master.Close() // unblocks the output copy
		r.slave.Close()
		r.wg.Wait()
		unix.Close(r.wakeR)
		unix.Close(r.wakeW)
		if r.raw {
			unix.IoctlSetTermios(r.inFD, unix.TCSETS, r.saved)
		}
	})
}
