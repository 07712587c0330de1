//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netns-run/netns-run/internal/daemon"
)

func TestLastLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", -1, "a\nb\nc\n"},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 5, "a\nb\nc\n"},
		{"a\nb\nc\n", 0, ""},
		{"a\nb\nc", 1, "c"},
		{"", 2, ""},
	} {
		if got := string(lastLines([]byte(c.in), c.n)); got != c.want {
			t.Errorf("lastLines(%q, %d) = %q; want %q", c.in, c.n, got, c.want)
		}
	}
}

// TestPrintDaemonLog: the rotated log comes before the current one, --tail
// counts across both, and a missing log is one clear error.
func TestPrintDaemonLog(t *testing.T) {
	rt := t.TempDir()
	var b bytes.Buffer
	if err := printDaemonLog(rt, -1, false, &b); err == nil || !strings.Contains(err.Error(), "no daemon log at") {
		t.Errorf("no log: %v", err)
	}
	write(t, daemon.RotatedLogPath(rt), "old 1\nold 2\n")
	write(t, daemon.LogPath(rt), "new 1\nnew 2\n")
	if err := printDaemonLog(rt, -1, false, &b); err != nil || b.String() != "old 1\nold 2\nnew 1\nnew 2\n" {
		t.Errorf("the whole log: %q, %v", b.String(), err)
	}
	b.Reset()
	if err := printDaemonLog(rt, 3, false, &b); err != nil || b.String() != "old 2\nnew 1\nnew 2\n" {
		t.Errorf("--tail 3: %q, %v", b.String(), err)
	}
}

// TestFollowLog: what is appended is copied, and after a rotation the
// old file's rest and then the new file.
func TestFollowLog(t *testing.T) {
	rt := t.TempDir()
	path := daemon.LogPath(rt)
	write(t, path, "before\n")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Seek(0, 2)
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- followLog(ctx, path, f, out) }()
	appendTo(t, path, "line 1\n")
	waitFor(t, out, "line 1\n")
	appendTo(t, path, "line 2\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write(t, path, "line 3\n")
	waitFor(t, out, "line 1\nline 2\nline 3\n")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for followLog's goroutine and the
// test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("followed %q; want %q", out.String(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
