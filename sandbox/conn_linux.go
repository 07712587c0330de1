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

// send writes one message, with fd attached when fd >= 0.
func send(c *net.UnixConn, m message, fd int) error {
	b, err := encode(m)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send to sandbox peer: %w", err)
	}
	return nil
}

// recv reads one message and the descriptor that came with it, or -1.
// io.EOF means the peer is gone.
func recv(c *net.UnixConn) (message, int, error) {
	b := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(b, oob)
	if err != nil {
		return message{}, -1, err
	}
	fd := -1
	if oobn > 0 {
		fd, err = parseRights(oob[:oobn])
		if err != nil {
			return message{}, -1, err
		}
	}
	if n == 0 {
		if fd >= 0 {
			unix.Close(fd)
		}
		return message{}, -1, errPeerGone
	}
	m, err := decode(b[:n])
	if err != nil && fd >= 0 {
		unix.Close(fd)
		fd = -1
	}
	return m, fd, err
}

var errPeerGone = fmt.Errorf("sandbox peer closed the control socket")

func parseRights(oob []byte) (int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1, fmt.Errorf("parse control message: %w", err)
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, extra := range fds[1:] {
			unix.Close(extra)
		}
		if len(fds) > 0 {
			unix.CloseOnExec(fds[0])
			return fds[0], nil
		}
	}
	return -1, nil
}
