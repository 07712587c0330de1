package wire

import (
	"encoding/json"
	"testing"
)

// TestMessages checks the protocol's JSON names and that a message is
// one member of the union.
func TestMessages(t *testing.T) {
	for _, c := range []struct {
		m    AgentMessage
		want string
	}{
		{AgentMessage{Exec: &ExecSpec{Argv: []string{"a"}, Tty: true}}, `{"exec":{"argv":["a"],"env":null,"tty":true}}`},
		{AgentMessage{ExecExited: &ExecStatus{ID: 2, Pid: 9, Code: 0}}, `{"exec_exited":{"id":2,"pid":9,"code":0}}`},
		{AgentMessage{Signal: &ExecSignal{Signal: 2}}, `{"signal":{"signal":2}}`},
		{AgentMessage{Start: Present}, `{"start":{}}`},
	} {
		b, err := json.Marshal(c.m)
		if err != nil || string(b) != c.want {
			t.Errorf("%s, %v; want %s", b, err, c.want)
		}
		var back AgentMessage
		if err := json.Unmarshal(b, &back); err != nil || back.Validate() != nil {
			t.Errorf("%s: decoded %v, valid: %v", b, err, back.Validate())
		}
	}
	for _, bad := range []AgentMessage{{}, {Start: Present, Mapped: Present}, {Exec: &ExecSpec{}, Signal: &ExecSignal{}}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: want an error (not exactly one member)", bad)
		}
	}
}
