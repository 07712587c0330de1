package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

type greeting struct {
	Hello *string   `json:"hello,omitempty"`
	Bye   *struct{} `json:"bye,omitempty"`
}

func (g *greeting) Validate() error { return ExactlyOne(g.Hello != nil, g.Bye != nil) }

func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	a, f, err := SocketPair("test")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func pipeFDs(t *testing.T, n int) []int {
	t.Helper()
	var fds []int
	for range n {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		fds = append(fds, p[0], p[1])
	}
	t.Cleanup(func() { CloseFDs(fds) })
	return fds
}

func TestRoundTripWithDescriptors(t *testing.T) {
	a, b := pair(t)
	fds := pipeFDs(t, 1)
	hello := "world"
	if err := Send(a, greeting{Hello: &hello}, fds...); err != nil {
		t.Fatal(err)
	}
	var got greeting
	rfds, err := Recv(b, &got)
	if err != nil || got.Hello == nil || *got.Hello != "world" || len(rfds) != 2 {
		t.Fatalf("Recv = %+v, %d fds, %v", got, len(rfds), err)
	}
	defer CloseFDs(rfds)
	// The received write end reaches the sent read end.
	if _, err := unix.Write(rfds[1], []byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if n, err := unix.Read(fds[0], buf); n != 1 || err != nil {
		t.Fatalf("read through the passed pipe: %d, %v", n, err)
	}
	if flags, _ := unix.FcntlInt(uintptr(rfds[0]), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
		t.Error("a received descriptor is not close-on-exec")
	}
}

func TestRecvRefusesCutMessages(t *testing.T) {
	hello := strings.Repeat("x", 100)
	cases := []struct {
		name    string
		fds     int
		maxB    int
		maxFD   int
		wantErr string
	}{
		{"payload larger than the bound (MSG_TRUNC)", 0, 64, MaxFDs, "larger than 64 bytes"},
		{"more descriptors than room (MSG_CTRUNC)", 3, MaxMessage, 2, "more descriptors"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := pair(t)
			fds := pipeFDs(t, c.fds)[:c.fds]
			if err := Send(a, greeting{Hello: &hello}, fds...); err != nil {
				t.Fatal(err)
			}
			before := openFDs(t)
			var got greeting
			rfds, err := recvBounded(b, &got, c.maxB, c.maxFD)
			var bad *DecodeError
			if !errors.As(err, &bad) || !strings.Contains(err.Error(), c.wantErr) || rfds != nil {
				t.Fatalf("recv = %d fds, %v; want a DecodeError saying %q", len(rfds), err, c.wantErr)
			}
			if after := openFDs(t); after != before {
				t.Errorf("descriptors that arrived with the cut message stay open: %d before, %d after", before, after)
			}
		})
	}
}

func TestRecvChecksTheUnion(t *testing.T) {
	a, b := pair(t)
	hello := "x"
	for _, m := range []greeting{{}, {Hello: &hello, Bye: &struct{}{}}} {
		if err := Send(a, m); err != nil {
			t.Fatal(err)
		}
		var got greeting
		var bad *DecodeError
		if _, err := Recv(b, &got); !errors.As(err, &bad) {
			t.Errorf("%+v: Recv = %v; want a DecodeError (not exactly one member)", m, err)
		}
	}
	if _, err := a.Write([]byte("not json")); err != nil {
		t.Fatal(err)
	}
	var got greeting
	var bad *DecodeError
	if _, err := Recv(b, &got); !errors.As(err, &bad) {
		t.Errorf("garbage: Recv = %v; want a DecodeError", err)
	}
}

func TestRecvPeerGone(t *testing.T) {
	a, b := pair(t)
	a.Close()
	var got greeting
	if _, err := Recv(b, &got); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after the peer closed = %v; want io.EOF", err)
	}
}

func TestSendRefusesTooMuch(t *testing.T) {
	a, _ := pair(t)
	big := strings.Repeat("x", MaxMessage)
	if err := Send(a, greeting{Hello: &big}); err == nil {
		t.Error("Send of a message over MaxMessage: want an error")
	}
	if err := Send(a, greeting{Bye: &struct{}{}}, make([]int, MaxFDs+1)...); err == nil {
		t.Error("Send of more than MaxFDs descriptors: want an error")
	}
}

func TestExactlyOne(t *testing.T) {
	for _, c := range []struct {
		set []bool
		ok  bool
	}{{nil, false}, {[]bool{false, false}, false}, {[]bool{true}, true}, {[]bool{false, true, false}, true}, {[]bool{true, true}, false}} {
		if err := ExactlyOne(c.set...); (err == nil) != c.ok {
			t.Errorf("ExactlyOne(%v) = %v", c.set, err)
		}
	}
}

// peerHelperEnv makes the test binary a client that connects to the
// socket it names and waits to be closed (TestCheckPeer's other user).
const peerHelperEnv = "WIRE_TEST_PEER_SOCKET"

func TestMain(m *testing.M) {
	if path := os.Getenv(peerHelperEnv); path != "" {
		c, err := Dial(path)
		if err != nil {
			os.Exit(3)
		}
		buf := make([]byte, 16)
		c.Read(buf) // until the server closes
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestCheckPeer(t *testing.T) {
	// A directory of our own that the other uid can enter, for the socket
	// and a copy of this test binary (the build's is in a private one).
	dir, err := os.MkdirTemp("", "wire-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "s.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accept := func() error {
		ln.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := ln.AcceptUnix()
		if err != nil {
			return err
		}
		defer c.Close()
		return CheckPeer(c)
	}

	t.Run("own uid", func(t *testing.T) {
		c, err := Dial(path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := accept(); err != nil {
			t.Errorf("CheckPeer of our own connection = %v", err)
		}
	})

	t.Run("another uid", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to start a client as another uid")
		}
		os.Chmod(dir, 0o755)
		os.Chmod(path, 0o666)
		self, err := os.ReadFile("/proc/self/exe")
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "wire.test")
		if err := os.WriteFile(bin, self, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), peerHelperEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		if err := accept(); !errors.Is(err, ErrOtherUser) {
			t.Errorf("CheckPeer of uid 65534 = %v; want ErrOtherUser", err)
		}
	})
}

func TestMergeEnv(t *testing.T) {
	got := MergeEnv([]string{"PATH=/bin", "HOME=/home/u", "A=1"}, []string{"HOME=/root", "B=2", "A=3", "B=4"})
	want := []string{"PATH=/bin", "HOME=/root", "A=3", "B=4"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("MergeEnv = %q; want %q", got, want)
	}
}

// marshal encodes a union's member alone, and must give json.Marshal's
// bytes for every message.
func TestMarshalIsJSONMarshal(t *testing.T) {
	mode := tap.ModeTAP
	spec := Spec{
		Hostname: "web", Argv: []string{"sh", "-c", "echo <&>"}, Env: []string{"A=\u00e9"},
		Files: map[string][]byte{"/etc/hosts": []byte("127.0.0.1 localhost\n")},
		Link:  &tap.Config{Name: "eth0", MTU: 1500}, LoopbackTCP: []uint16{80},
	}
	for _, v := range []any{
		AgentMessage{Spec: &spec},
		AgentMessage{Start: Present},
		AgentMessage{Made: &Made{Link: &mode, Warnings: []string{"w"}, Listeners: 1}},
		AgentMessage{Made: &Made{}},
		AgentMessage{ExecExited: &ExecStatus{ID: 3, Code: 1, Error: "no \"such\" file"}},
		AgentMessage{Start: Present, Mapped: Present}, // two members: as json has it
		AgentMessage{},
		Hello{Join: &Join{SandboxID: "abc", Network: "bridge"}},
		ControlRequest{Resize: Present},
		Request{SandboxID: "abc", DialChannel: &struct{}{}}, // not a union
		Reply{Error: "x"},
		&AgentMessage{Start: Present},
		map[string]int{"a": 1},
		struct {
			A *int `json:"a"` // not omitempty
		}{},
		struct {
			A *int `json:"a<b,omitempty"`
		}{A: new(int)},
	} {
		want, werr := json.Marshal(v)
		got, gerr := marshal(v)
		if string(got) != string(want) || (werr == nil) != (gerr == nil) {
			t.Errorf("%#v: marshal gives %s (%v), json.Marshal %s (%v)", v, got, gerr, want, werr)
		}
	}
}

// unmarshal decodes a union's one member alone, and must give
// json.Unmarshal's result and error for every message.
func TestUnmarshalIsJSONUnmarshal(t *testing.T) {
	spec, _ := json.Marshal(AgentMessage{Spec: &Spec{Hostname: "web", Argv: []string{"a"}, Files: map[string][]byte{"/f": []byte("x")}}})
	for _, in := range []string{
		string(spec),
		`{"start":{}}`, `{"spec":null}`, `{"exec_started":{"id":1,"pid":2}}`, `{"exec":{}}`,
		`{"spec":1}`, `{"spec":{"hostname":5}}`, `{"spec":{"hostname":"a"},"start":{}}`,
		`{"start":{},"spec":{"hostname":"a"}}`, `{"spec":{"hostname":"a"},"spec":{"argv":["b"]}}`,
		`{"SPEC":{"hostname":"a"}}`, `{"spe\u0063":{}}`, `{"nothing":{}}`, `{"spec":{}}}`, `{"spec":{}} x`,
		`{ "spec":{}}`, `null`, `[]`, `{}`, `{"spec":`, `{"":{}}`,
	} {
		var want, got AgentMessage
		werr := json.Unmarshal([]byte(in), &want)
		gerr := unmarshal([]byte(in), &got)
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(got)
		if string(wj) != string(gj) || fmt.Sprint(werr) != fmt.Sprint(gerr) {
			t.Errorf("%s: unmarshal gives %s (%v), json.Unmarshal %s (%v)", in, gj, gerr, wj, werr)
		}
	}
	var j, k Joined // not a union
	in := []byte(`{"error":"x","ip":"10.0.0.2"}`)
	if werr, gerr := json.Unmarshal(in, &j), unmarshal(in, &k); fmt.Sprint(j) != fmt.Sprint(k) || fmt.Sprint(werr) != fmt.Sprint(gerr) {
		t.Errorf("Joined: %v (%v), want %v (%v)", k, gerr, j, werr)
	}
}
