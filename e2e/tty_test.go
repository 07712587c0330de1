package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRunWithTerminal: run -it under a terminal (a pty pair the test
// drives, as a user's terminal): the command gets a terminal of its own,
// a line typed runs, the window size follows a change of the user's
// terminal (stty size), and the exit status comes back; run -itd keeps a
// terminal for a detached command, whose output logs shows.
func TestRunWithTerminal(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	master, slave := openPTY(t)
	setSize(t, master, 30, 100)
	cmd := exec.Command(netnsRun, "run", "-it", "--network", "none", "--", "/bin/sh")
	cmd.Env = append(os.Environ(), u.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waited := false
	t.Cleanup(func() {
		if !waited {
			cmd.Process.Kill()
			<-done
		}
	})

	out := &ptyReader{f: master}
	out.expect(t, "the prompt", regexp.MustCompile(`[#$] $`))
	fmt.Fprintf(master, "tty; stty size; echo typed-$((40+2))\n")
	out.expect(t, "the command's own terminal and the first size", regexp.MustCompile(`/dev/pts/\d+\r\n30 100\r\ntyped-42`))
	setSize(t, master, 40, 120)
	time.Sleep(200 * time.Millisecond)
	fmt.Fprintf(master, "stty size\n")
	out.expect(t, "the size after the window changed", regexp.MustCompile(`40 120`))
	fmt.Fprintf(master, "exit 3\n")
	select {
	case err := <-done:
		waited = true
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("run -it: exit %v; want status 3", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run -it did not end after exit 3; the terminal showed:\n%s", out.buf.String())
	}

	u.ok("run", "-itd", "--name", "ttyd", "--network", "none", "--", "/bin/sh", "-c", "tty; echo detached-ok; exec sleep 60")
	t.Cleanup(func() { u.nr("stop", "-t", "1", "ttyd") })
	var logs string
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs, "detached-ok") && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		logs = u.ok("logs", "ttyd").stdout
	}
	if !regexp.MustCompile(`^/dev/pts/\d+\r\ndetached-ok\r\n$`).MatchString(logs) {
		t.Errorf("logs of run -itd: %q; want its terminal's output", logs)
	}
}

func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0) // non-blocking: read deadlines work
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, s
}

func setSize(t *testing.T, master *os.File, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
}

// ptyReader collects what the terminal shows.
type ptyReader struct {
	f   *os.File
	buf bytes.Buffer
}

// rest is what arrived since the last match and arrives within half a
// second more: for a failure's message.
func (r *ptyReader) rest() string {
	b := make([]byte, 4096)
	for {
		r.f.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _ := r.f.Read(b)
		if n == 0 {
			return r.buf.String()
		}
		r.buf.Write(b[:n])
	}
}

// expect reads until re matches what arrived since the last match.
func (r *ptyReader) expect(t *testing.T, what string, re *regexp.Regexp) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	b := make([]byte, 4096)
	for time.Now().Before(deadline) {
		if loc := re.FindIndex(r.buf.Bytes()); loc != nil {
			r.buf.Next(loc[1])
			return
		}
		r.f.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _ := r.f.Read(b)
		r.buf.Write(b[:n])
	}
	t.Fatalf("%s: the terminal showed %q", what, r.buf.String())
}
