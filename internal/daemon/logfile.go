package daemon

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// The on-demand daemon logs to the runtime dir's daemon.log, which start
// opens for its stdout and stderr (so that a panic lands there too). The
// daemon rotates it once it passes logCap: daemon.log becomes
// daemon.log.1, replacing the one before, and a new daemon.log goes on
// its stderr. `netns-run daemon logs` prints both.
const (
	LogName = "daemon.log"
	logCap  = 8 << 20
)

// LogPath is the on-demand daemon's log in runtimeDir.
func LogPath(runtimeDir string) string { return filepath.Join(runtimeDir, LogName) }

// RotatedLogPath is the log before the current one, once it was rotated.
func RotatedLogPath(runtimeDir string) string { return LogPath(runtimeDir) + ".1" }

// LogOutput is where the daemon of runtimeDir writes its log: stderr,
// rotated at logCap when stderr is the runtime dir's daemon.log (the
// daemon was started on demand); else stderr as it is (a daemon run by
// hand writes where its user sends it).
func LogOutput(runtimeDir string) io.Writer {
	path := LogPath(runtimeDir)
	var st, fst unix.Stat_t
	if unix.Stat(path, &st) != nil || unix.Fstat(unix.Stderr, &fst) != nil || st.Dev != fst.Dev || st.Ino != fst.Ino {
		return os.Stderr
	}
	return &rotatingLog{path: path, out: os.Stderr, size: fst.Size, limit: logCap}
}

// rotatingLog writes to out, a descriptor open on path for appending,
// and once the file would pass limit renames it to path.1 and puts a new
// file at path on out's descriptor.
type rotatingLog struct {
	path  string
	out   *os.File
	limit int64

	mu   sync.Mutex
	size int64
}

func (l *rotatingLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size > 0 && l.size+int64(len(p)) > l.limit {
		if err := l.rotate(); err != nil {
			// Go on in the full file rather than lose the line; try
			// again after another limit's worth.
			fmt.Fprintf(l.out, "netns-run daemon: cannot rotate %s: %v\n", l.path, err)
			l.size = 0
		}
	}
	n, err := l.out.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate moves the log aside and starts a new one; l.mu is held.
func (l *rotatingLog) rotate() error {
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Dup3(int(f.Fd()), int(l.out.Fd()), 0); err != nil {
		return fmt.Errorf("put the new log on the daemon's descriptor: %w", err)
	}
	l.size = 0
	return nil
}
