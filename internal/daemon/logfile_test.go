package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRotatingLog: a write that would take the log past its limit moves
// it to .1 (replacing the one before) and goes to a new file on the same
// descriptor.
func TestRotatingLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, LogName)
	if err := os.WriteFile(path+".1", []byte("older\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	l := &rotatingLog{path: path, out: out, limit: 20}
	for _, line := range []string{"first line\n", "second\n", "third line\n", "fourth\n"} {
		if _, err := l.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read(path + ".1"); got != "first line\nsecond\n" {
		t.Errorf("the rotated log: %q; want the first two lines", got)
	}
	if got := read(path); got != "third line\nfourth\n" {
		t.Errorf("the new log: %q; want the last two lines", got)
	}
}

// TestLogOutput: a daemon whose stderr is not the runtime dir's log
// writes to stderr as it is.
func TestLogOutput(t *testing.T) {
	dir := t.TempDir()
	if w := LogOutput(dir); w != os.Stderr {
		t.Errorf("with no daemon.log: %T; want os.Stderr", w)
	}
	if err := os.WriteFile(LogPath(dir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if w := LogOutput(dir); w != os.Stderr {
		t.Errorf("with stderr elsewhere: %T; want os.Stderr", w)
	}
	if !strings.HasSuffix(RotatedLogPath(dir), "daemon.log.1") {
		t.Errorf("RotatedLogPath: %s", RotatedLogPath(dir))
	}
}
