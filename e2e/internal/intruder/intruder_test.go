package intruder

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen serves a unixpacket socket at path with handle, one call per
// connection, after reading the client's packet.
func listen(t *testing.T, path string, handle func(c *net.UnixConn)) {
	t.Helper()
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1024)
				if _, err := c.Read(buf); err != nil {
					return
				}
				handle(c)
			}()
		}
	}()
}

func TestTry(t *testing.T) {
	dir := t.TempDir()
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	listen(t, filepath.Join(dir, "reply"), func(c *net.UnixConn) { c.Write([]byte(`{"error":"no"}`)) })
	listen(t, filepath.Join(dir, "close"), func(*net.UnixConn) {})
	listen(t, filepath.Join(dir, "hold"), func(*net.UnixConn) { <-hold })
	// A server that answers at once and closes, before the packet comes.
	greet, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: filepath.Join(dir, "greet"), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer greet.Close()
	go func() {
		for {
			c, err := greet.AcceptUnix()
			if err != nil {
				return
			}
			c.Write([]byte("go away"))
			c.Close()
		}
	}()

	// A directory deep enough that its sockets' paths do not fit in a
	// socket address: Try must still reach them.
	deep := filepath.Join(dir, strings.Repeat("d", 100))
	if err := os.Mkdir(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: filepath.Join(dir, "short"), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Rename(filepath.Join(dir, "short"), filepath.Join(deep, "long")); err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := l.AcceptUnix()
		if err == nil {
			c.Read(make([]byte, 1024))
			c.Write([]byte("deep"))
			c.Close()
		}
	}()

	for _, c := range []struct {
		path  string
		want  Outcome
		reply string
	}{
		{"reply", Replied, `{"error":"no"}`},
		{"close", Closed, ""},
		{"hold", NoAnswer, ""},
		{"greet", Replied, "go away"},
		{"missing", ConnectFailed, ""},
		{filepath.Join(filepath.Base(deep), "long"), Replied, "deep"},
	} {
		got := Try(filepath.Join(dir, c.path), []byte("{}"), 500*time.Millisecond)
		if got.Outcome != c.want || string(got.Reply) != c.reply || got.UID != os.Getuid() {
			t.Errorf("Try %s: %v; want %s %q from uid %d", c.path, got, c.want, c.reply, os.Getuid())
		}
	}
}

func TestServeAsk(t *testing.T) {
	dir := t.TempDir()
	listen(t, filepath.Join(dir, "target"), func(c *net.UnixConn) { c.Write([]byte("hi")) })
	sock := filepath.Join(dir, "intruder.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go Serve(l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := Ask(ctx, sock, Request{Path: filepath.Join(dir, "target"), Payload: []byte("{}")})
	if err != nil || got.Outcome != Replied || string(got.Reply) != "hi" {
		t.Fatalf("Ask: %v, %v; want a reply \"hi\"", got, err)
	}
}
