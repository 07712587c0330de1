package slirp

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// maxPodmanReply is what Podman reads of a reply, in one read.
const maxPodmanReply = 2048

// FuzzAPIRequest answers the lines of the input as API requests, one per
// connection as clients send them: every reply is JSON of exactly a return
// or an error, small enough for Podman to read at once, and the forwards
// made are listed, removed and leave no descriptor behind. Only forwards
// on the host's loopback are bound (others are skipped), so the run
// listens nowhere else.
func FuzzAPIRequest(f *testing.F) {
	for _, s := range []string{
		`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":0,"guest_port":80}}`,
		`{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"127.0.0.1","host_port":1,"guest_addr":"10.0.2.5","guest_port":53}}` + "\n" + `{"execute":"list_hostfwd"}` + "\n" + `{"execute":"remove_hostfwd","arguments":{"id":1}}`,
		`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":65535,"guest_port":65535}}`,
		`{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":1,"guest_port":1}}`,
		`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":1,"guest_addr":"fd00::1","guest_port":1}}`,
		`{"execute":"remove_hostfwd","arguments":{"id":-1}}`,
		`{"execute":"remove_hostfwd","arguments":{}}`,
		`{"execute":"list_hostfwd","arguments":null}`,
		`{"execute":"shutdown"}`,
		`{"execute":7}`,
		`{not json`,
		``,
		`{"execute":"` + strings.Repeat(`\u0001`, 600) + `"}`,
		`{"execute":"add_hostfwd","arguments":{"proto":"` + strings.Repeat("x", 3000) + `","host_addr":"127.0.0.1","host_port":1,"guest_port":1}}`,
	} {
		f.Add([]byte(s))
	}
	fwd := newForwards(nil, netip.MustParseAddr("10.0.2.100"))
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) > maxRequest {
			return // serveConn refuses it unread
		}
		before := countFDs(t)
		lines := bytes.Split(input, []byte("\n"))
		for _, line := range lines[:min(len(lines), 8)] {
			if bindsBeyondLoopback(line) {
				t.Skip("would listen beyond the host's loopback")
			}
			rep := fwd.answer(context.Background(), line)
			checkAPIReply(t, line, rep)
		}
		for _, h := range fwd.list() {
			if err := fwd.remove(h.ID); err != nil {
				t.Fatalf("removing listed forward %d: %v", h.ID, err)
			}
		}
		if n := len(fwd.list()); n != 0 {
			t.Fatalf("%d forwards left after removing every listed one", n)
		}
		if after := countFDs(t); after != before {
			t.Fatalf("%d descriptors before the requests, %d after their forwards were removed", before, after)
		}
	})
}

func checkAPIReply(t *testing.T, req []byte, rep reply) {
	t.Helper()
	if (rep.Error == nil) == (rep.Return == nil) {
		t.Fatalf("request %.200q: reply %+v has not exactly one of return and error", req, rep)
	}
	out, err := json.Marshal(rep)
	if err != nil {
		t.Fatalf("request %.200q: reply does not encode: %v", req, err)
	}
	if len(out) > maxPodmanReply {
		t.Fatalf("request %.200q: reply of %d bytes, Podman reads %d", req, len(out), maxPodmanReply)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("request %.200q: reply %s is no JSON object: %v", req, out, err)
	}
}

// bindsBeyondLoopback reports whether answer would bind a forward on an
// address other than the host's loopback, read as answer reads it.
func bindsBeyondLoopback(line []byte) bool {
	var req request
	if json.Unmarshal(bytes.TrimSpace(line), &req) != nil || req.Execute != "add_hostfwd" {
		return false
	}
	var h hostfwd
	if json.Unmarshal(req.Arguments, &h) != nil {
		return false
	}
	a, err := netip.ParseAddr(h.HostAddr)
	return h.HostAddr == "" || (err == nil && !a.IsLoopback())
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
