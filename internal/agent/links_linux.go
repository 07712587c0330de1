package agent

import (
	"fmt"

	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

// addLink makes the interface inside the sandbox and sends its descriptor.
func (a *agent) addLink(cfg tap.Config) {
	link, err := tap.Make(cfg)
	if err != nil {
		wire.Send(a.conn, wire.AgentMessage{LinkAdded: &wire.LinkAdded{Error: fmt.Sprintf("make %s: %v", cfg.Name, err)}})
		return
	}
	if link.FD < 0 { // an adopted kernel interface: no descriptor
		wire.Send(a.conn, wire.AgentMessage{LinkAdded: &wire.LinkAdded{Mode: link.Mode}})
		return
	}
	wire.Send(a.conn, wire.AgentMessage{LinkAdded: &wire.LinkAdded{Mode: link.Mode}}, link.FD)
	unix.Close(link.FD)
}
