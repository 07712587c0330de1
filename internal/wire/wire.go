// Package wire sends JSON messages, optionally with file descriptors,
// over SOCK_SEQPACKET unix sockets: one message per packet, so no framing.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// maxMessage bounds one packet.
const maxMessage = 256 << 10

// maxFDs bounds the descriptors one message may carry.
const maxFDs = 8

// Send writes v as one JSON packet with fds attached.
func Send(c *net.UnixConn, v any, fds ...int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	return nil
}

// Recv reads one packet into v and returns the descriptors that came with
// it (close-on-exec, owned by the caller). io.EOF means the peer is gone.
func Recv(c *net.UnixConn, v any) ([]int, error) {
	b := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(4*maxFDs))
	n, oobn, _, _, err := c.ReadMsgUnix(b, oob)
	if err != nil {
		return nil, err
	}
	fds, ferr := parseRights(oob[:oobn])
	if n == 0 && ferr == nil {
		closeAll(fds)
		return nil, io.EOF
	}
	if ferr != nil {
		closeAll(fds)
		return nil, ferr
	}
	if err := json.Unmarshal(b[:n], v); err != nil {
		closeAll(fds)
		return nil, fmt.Errorf("decode message: %w", err)
	}
	return fds, nil
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range got {
			unix.CloseOnExec(fd)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Dial connects to a SOCK_SEQPACKET unix socket, also at a path too long
// for a socket address.
func Dial(path string) (*net.UnixConn, error) {
	addr, dirFD, err := SocketAddr(path)
	if err != nil {
		return nil, err
	}
	if dirFD >= 0 {
		defer unix.Close(dirFD)
	}
	return net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: addr, Net: "unixpacket"})
}

// Listen binds a SOCK_SEQPACKET unix socket at path (also one too long for
// a socket address), mode 0600. Closing the listener does not remove the
// file: the caller does.
func Listen(path string) (*net.UnixListener, error) {
	addr, dirFD, err := SocketAddr(path)
	if err != nil {
		return nil, err
	}
	if dirFD >= 0 {
		defer unix.Close(dirFD)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: addr, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// IsGone reports errors that mean the peer closed the connection.
func IsGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)
}
