package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/e2e/internal/intruder"
)

// intruderProc is the launcher's handle on the intruder: this binary again,
// run as a second unprivileged user, that tries the test user's sockets when
// a test asks (see e2e/internal/intruder).
type intruderProc struct {
	pid  int
	done chan struct{} // closed once it has been reaped
	ws   syscall.WaitStatus
}

// startIntruder listens on base/intruder.sock (the test user's only, mode
// 0600) and starts the intruder as user name with that listener as fd 3:
// it never needs to create anything itself.
func startIntruder(base, name string, tu testUser, r *reaper) (*intruderProc, string, error) {
	iu, err := lookupPasswd(name)
	if err != nil {
		return nil, "", fmt.Errorf("intruder user %q: %w (create it with scripts/ensure-test-user.sh --no-subids %s)", name, err, name)
	}
	if iu.uid == 0 || iu.uid == tu.uid {
		return nil, "", fmt.Errorf("intruder user %q has uid %d: want an unprivileged uid other than the test user's (%d)", name, iu.uid, tu.uid)
	}
	sock := filepath.Join(base, "intruder.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, "", fmt.Errorf("intruder socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	defer l.Close() // the intruder has its own copy
	if err := os.Chown(sock, int(tu.uid), int(tu.gid)); err != nil {
		return nil, "", fmt.Errorf("intruder socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		return nil, "", fmt.Errorf("intruder socket: %w", err)
	}
	lf, err := l.File()
	if err != nil {
		return nil, "", fmt.Errorf("intruder socket: %w", err)
	}
	defer lf.Close()

	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = "outerns-intruder"
	cmd.Dir = "/"
	cmd.Env = []string{stageEnv + "=" + stageIntruder, "PATH=" + testPath}
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: iu.uid, Gid: iu.gid, Groups: iu.groups},
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("starting the intruder: %w", err)
	}
	p := &intruderProc{pid: cmd.Process.Pid, done: make(chan struct{})}
	exit := r.wait(p.pid)
	go func() {
		p.ws = <-exit
		close(p.done)
	}()
	return p, sock, nil
}

// stop kills the intruder by its pid, unless its exit was reaped, and
// waits for it, briefly.
func (p *intruderProc) stop() {
	select {
	case <-p.done:
		return // reaped already: its pid may be another process's now
	default:
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		fmt.Fprintf(os.Stderr, "outerns: the intruder (pid %d) did not exit after SIGKILL\n", p.pid)
	}
}

// intruderMain serves the listener the launcher passed as fd 3.
func intruderMain() error {
	l, err := net.FileListener(os.NewFile(3, "intruder.sock"))
	if err != nil {
		return fmt.Errorf("intruder: %w", err)
	}
	return intruder.Serve(l)
}
