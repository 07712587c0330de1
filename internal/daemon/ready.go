package daemon

import (
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// readyEnv names, in the environment of a daemon started on demand, the
// descriptor of a pipe it writes one byte to once it listens: the client
// that started it connects then, instead of polling the socket (a 20 ms
// poll cost the first run 13 ms on average; docs/ARCHITECTURE.md,
// Measured facts: Start-up on the default network).
const readyEnv = "_NETNS_RUN_DAEMON_READY_FD"

// readyFD is the descriptor a client passes as readyEnv: the first of
// exec.Cmd's ExtraFiles.
const readyFD = 3

// signalReady tells the client that started this daemon that it listens,
// and forgets the pipe, which no one else may inherit. Without readyEnv
// (started by hand) it does nothing.
func signalReady() {
	v, ok := os.LookupEnv(readyEnv)
	if !ok {
		return
	}
	os.Unsetenv(readyEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd != readyFD {
		return // not ours to write to
	}
	unix.Write(fd, []byte{1})
	unix.Close(fd)
}

// awaitReady waits until the daemon on the pipe's far end listens (it
// wrote its byte) or cannot (it exited, or another daemon holds the lock:
// the pipe closed empty), or until deadline.
func awaitReady(r *os.File, deadline time.Time) {
	if r.SetReadDeadline(deadline) == nil {
		var b [1]byte
		r.Read(b[:])
	}
}
