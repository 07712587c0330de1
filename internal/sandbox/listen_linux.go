package sandbox

import (
	"fmt"
	"net"
	"os"

	"github.com/netns-run/netns-run/internal/wire"
)

// loopbackListeners: the -T listeners the agent made inside the sandbox (see
// internal/agent), taken over by the supervisor.

// loopbackListeners turns the agent's descriptors into listeners (taking
// them over); on an error none is left open.
func loopbackListeners(fds []int) ([]net.Listener, error) {
	var out []net.Listener
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "sandbox-loopback-listener")
		ln, err := net.FileListener(f) // a duplicate, nonblocking, in the netpoller
		f.Close()
		if err != nil {
			for _, l := range out {
				l.Close()
			}
			wire.CloseFDs(fds[i+1:])
			return nil, fmt.Errorf("listener from the sandbox: %w", err)
		}
		out = append(out, ln)
	}
	return out, nil
}
