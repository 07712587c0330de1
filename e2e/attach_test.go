package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// attachInPTY starts `netns-run attach args...` in a terminal the test
// drives, as a user's; the result comes on the channel once it ends.
func attachInPTY(t *testing.T, u *user, args ...string) (*os.File, *ptyReader, <-chan *exec.ExitError) {
	t.Helper()
	master, slave := openPTY(t)
	setSize(t, master, 25, 90)
	cmd := exec.Command(netnsRun, append([]string{"attach"}, args...)...)
	cmd.Env = append(os.Environ(), u.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	done := make(chan *exec.ExitError, 1)
	waited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		ee, _ := err.(*exec.ExitError)
		if err != nil && ee == nil {
			ee = &exec.ExitError{ProcessState: cmd.ProcessState}
		}
		done <- ee
		close(waited)
	}()
	t.Cleanup(func() {
		select {
		case <-waited:
		default:
			cmd.Process.Kill()
			<-waited
		}
	})
	return master, &ptyReader{f: master}, done
}

// waitAttach waits for the end of an attach and returns its status.
func waitAttach(t *testing.T, done <-chan *exec.ExitError, out *ptyReader, what string) int {
	t.Helper()
	select {
	case ee := <-done:
		if ee == nil {
			return 0
		}
		return ee.ExitCode()
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: attach did not end; the terminal showed:\n%s", what, out.buf.String())
	}
	return -1
}

// TestAttach: attach to a sandbox run with -itd reaches its terminal as
// docker attach does: keys typed run in its shell, with the attaching
// terminal's size; ctrl-p ctrl-q detaches ("read escape sequence", status
// 1) and leaves it running; --detach-keys changes the keys; a second
// attach sees the command's exit status. A sandbox without a terminal
// shows its output from now on and gets attach's signals (sig-proxy).
func TestAttach(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("run", "-itd", "--name", "att", "--network", "none", "--", "/bin/sh")
	t.Cleanup(func() { u.nr("stop", "-t", "1", "att") })

	master, out, done := attachInPTY(t, u, "att")
	fmt.Fprintf(master, "stty size; echo attached-$((40+2))\n")
	out.expect(t, "a line typed runs, at the attaching terminal's size", regexp.MustCompile(`25 90\r\nattached-42`))
	master.Write([]byte{0x10, 0x11}) // ctrl-p ctrl-q
	if code := waitAttach(t, done, out, "ctrl-p ctrl-q"); code != 1 {
		t.Errorf("attach after ctrl-p ctrl-q: status %d; want 1, as docker attach; the terminal showed:\n%q", code, out.rest())
	}
	out.expect(t, "Docker's word on a detach", regexp.MustCompile(`read escape sequence`))
	if st := u.inspect("att")["State"].(map[string]any); st["Running"] != true {
		t.Fatalf("after a detach the sandbox is %v; want it running", st)
	}

	master, out, done = attachInPTY(t, u, "--detach-keys", "ctrl-x,y", "att")
	fmt.Fprintf(master, "echo p-q-\x10\x11-passed\n")
	out.expect(t, "ctrl-p ctrl-q are keys like any once others detach", regexp.MustCompile(`p-q-.*-passed`))
	master.Write([]byte{0x18, 'y'})
	if code := waitAttach(t, done, out, "--detach-keys ctrl-x,y"); code != 1 {
		t.Errorf("attach after ctrl-x y: status %d; want 1; the terminal showed:\n%q", code, out.rest())
	}

	master, out, done = attachInPTY(t, u, "att")
	fmt.Fprintf(master, "exit 3\n")
	if code := waitAttach(t, done, out, "exit 3"); code != 3 {
		t.Errorf("attach when the shell exited 3: status %d; want 3", code)
	}
	if r := u.nr("attach", "att"); r.code != 125 || !strings.Contains(r.stderr, "not running") {
		t.Errorf("attach to an ended sandbox: %s; want status 125 and a word that it is not running", r)
	}

	// Without a terminal: the log from now on, and the signals.
	u.ok("run", "-d", "--name", "plain", "--network", "none", "--", "/bin/sh", "-c",
		`trap 'echo got-term; exit 4' TERM; i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.1; done`)
	t.Cleanup(func() { u.nr("stop", "-t", "1", "plain") })
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(u.ok("logs", "plain").stdout, "tick-3\n") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	a := startCmd(t, cmdOpts{env: u.env}, netnsRun, "attach", "plain")
	a.waitLine("stdout", regexp.MustCompile(`^tick-\d+$`))
	if strings.HasPrefix(a.stdout.String(), "tick-1\n") {
		t.Errorf("attach printed the log from its start; want only what came after: %q", a.stdout.String())
	}
	a.signal(syscall.SIGTERM)
	r := a.wait(10 * time.Second)
	if r.code != 4 || !strings.Contains(r.stdout, "got-term") {
		t.Errorf("attach to a sandbox without a terminal, then SIGTERM: %s; want the trap's output and status 4", r)
	}
	if r := u.nr("attach", "--detach-keys", "ctrl-1", "plain"); r.code != 125 || !strings.Contains(r.stderr, "--detach-keys") {
		t.Errorf("attach with bad detach keys: %s; want status 125 naming --detach-keys", r)
	}
}
