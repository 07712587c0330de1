// Package sandbox starts a command in its own user, network, mount and uts
// namespaces. The supervisor side (Start) re-executes this binary as the
// sandbox agent (ChildMain), which makes eth0, hands its descriptor back over
// a unix socket, places the hosts files and then runs the command and waits
// for it. Nothing here knows about the host-side stack.
package sandbox

import (
	"encoding/json"
	"fmt"

	"github.com/netns-run/netns-run/tap"
)

// childEnv marks a re-executed process as the sandbox agent. It is removed
// from the command's environment (NETNS-NOTES pitfall 11).
const childEnv = "_NETNS_RUN_SANDBOX"

// The values of childEnv: an agent waiting for its id maps, or a working one.
const (
	stageRemap = "remap"
	stageAgent = "agent"
)

// Exit statuses, as Docker's.
const (
	ExitOwnError     = 125 // netns-run itself failed
	ExitCannotInvoke = 126 // the command exists but cannot be run
	ExitNotFound     = 127 // the command was not found
)

// Spec is what the sandbox is made of.
type Spec struct {
	Hostname string
	Link     tap.Config
	// Files maps a path in the sandbox (/etc/hosts, ...) to its content.
	Files map[string][]byte
	Argv  []string
	Env   []string
}

// message is one packet on the supervisor-agent socket.
type message struct {
	Mapped   bool      `json:"mapped,omitempty"`   // supervisor -> agent: id maps written
	Spec     *Spec     `json:"spec,omitempty"`     // supervisor -> agent, first
	Link     *tap.Mode `json:"link,omitempty"`     // agent -> supervisor, with the fd
	Warnings []string  `json:"warnings,omitempty"` // agent -> supervisor, with Link
	Start    bool      `json:"start,omitempty"`    // supervisor -> agent: run the command
	Error    string    `json:"error,omitempty"`    // agent -> supervisor, then it exits
	Code     int       `json:"code,omitempty"`     // exit status that goes with Error
}

func encode(m message) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	return b, nil
}

func decode(b []byte) (message, error) {
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode message: %w", err)
	}
	return m, nil
}

// Error is a failure the agent reported, with the exit status it implies.
type Error struct {
	Msg  string
	Code int
}

func (e *Error) Error() string { return e.Msg }
