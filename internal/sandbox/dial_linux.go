package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/netns-run/netns-run/internal/wire"
	"golang.org/x/sys/unix"
)

// The loopback fast path of published ports: internal/dialchan dials with
// sockets that the agent makes inside the sandbox (internal/agent serves
// the channel). See docs/ARCHITECTURE.md, Data paths.

// OpenDialChannel hands the agent a new dial channel and returns the
// supervisor's end, for a dialchan.Dialer in this process or in another
// (the daemon of a shared network, over a unix socket). The agent serves
// it until the sandbox ends or the file's last copy is closed. The sandbox
// must be running (after Run).
func (sb *Sandbox) OpenDialChannel() (*os.File, error) {
	sb.mu.Lock()
	running, ended := sb.running, sb.ended
	sb.mu.Unlock()
	if !running || ended {
		return nil, ErrNotRunning
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dial channel: socketpair: %w", err)
	}
	err = wire.Send(sb.conn, wire.AgentMessage{DialChannel: wire.Present}, fds[1])
	unix.Close(fds[1])
	if err != nil {
		unix.Close(fds[0])
		if errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			return nil, ErrNotRunning
		}
		return nil, fmt.Errorf("dial channel: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "sandbox-dial-channel"), nil
}
