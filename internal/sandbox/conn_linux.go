package sandbox

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// maxMessage bounds one packet; a Spec with its hosts files is a few KiB.
const maxMessage = 256 << 10

// socketPair returns the supervisor's end as a conn and the agent's end as
// a file to pass as an inherited descriptor. SOCK_SEQPACKET keeps message
// boundaries, so each JSON message is one read.
func socketPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	own := os.NewFile(uintptr(fds[0]), "sandbox-control")
	defer own.Close()
	conn, err := fileConn(own)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return conn, os.NewFile(uintptr(fds[1]), "sandbox-control-child"), nil
}

func fileConn(f *os.File) (*net.UnixConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("control socket: unexpected type %T", c)
	}
	return uc, nil
}

// maxFDs bounds the descriptors one message carries: exec sends 3, the
// agent's first reply eth0's and two listeners (IPv4, IPv6) per
// Spec.LoopbackTCP port (SCM_RIGHTS takes at most 253).
const maxFDs = 1 + 2*MaxLoopbackTCP

// send writes one message with fds attached (none, a TAP fd, or an exec's
// stdin, stdout and stderr). The fds stay the caller's: the kernel passes
// duplicates.
func send(c *net.UnixConn, m message, fds ...int) error {
	b, err := encode(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send to sandbox peer: %w", err)
	}
	return nil
}

// sendFiles is send with the descriptors of files, taken without putting
// them in blocking mode (as File.Fd would).
func sendFiles(c *net.UnixConn, m message, files []*os.File) error {
	fds := make([]int, 0, len(files))
	var rec func(i int) error
	rec = func(i int) error {
		if i == len(files) {
			return send(c, m, fds...)
		}
		rc, err := files[i].SyscallConn()
		if err != nil {
			return fmt.Errorf("descriptor of %s: %w", files[i].Name(), err)
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			fds = append(fds, int(fd))
			serr = rec(i + 1)
		}); err != nil {
			return fmt.Errorf("descriptor of %s: %w", files[i].Name(), err)
		}
		return serr
	}
	return rec(0)
}

// decodeError is a message that arrived but could not be understood; the
// socket itself is fine.
type decodeError struct{ error }

// recv reads one message and the descriptors that came with it (close-on-
// exec, the caller's to close). io.EOF or errPeerGone means the peer is
// gone; a *decodeError only that this message was bad.
func recv(c *net.UnixConn) (message, []int, error) {
	b := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(4*maxFDs))
	n, oobn, flags, _, err := c.ReadMsgUnix(b, oob)
	if err != nil {
		return message{}, nil, err
	}
	var fds []int
	if oobn > 0 {
		fds, err = parseRights(oob[:oobn])
		if err != nil {
			return message{}, nil, &decodeError{err}
		}
	}
	if n == 0 {
		closeFDs(fds)
		return message{}, nil, errPeerGone
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeFDs(fds)
		return message{}, nil, &decodeError{fmt.Errorf("message too large or too many descriptors")}
	}
	m, err := decode(b[:n])
	if err != nil {
		closeFDs(fds)
		return m, nil, &decodeError{err}
	}
	return m, fds, nil
}

var errPeerGone = fmt.Errorf("sandbox peer closed the control socket")

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var out []int
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
		}
		out = append(out, fds...)
	}
	return out, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
