package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/netns-run/netns-run/hosts"
	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

// controlFD is where Start puts the agent's end of the control socket.
const controlFD = 3

// IsChild reports whether this process was started by Start as an agent.
func IsChild() bool {
	v := os.Getenv(childEnv)
	return v == stageAgent || v == stageRemap
}

// ChildMain is the agent: it never returns.
func ChildMain() {
	if os.Getenv(childEnv) == stageRemap {
		reexecWhenMapped()
	}
	f := os.NewFile(controlFD, "sandbox-control")
	conn, err := fileConn(f) // dups with CLOEXEC; the command must not inherit it
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netns-run: sandbox agent: %v\n", err)
		os.Exit(ExitOwnError)
	}
	os.Exit(runAgent(conn))
}

// reexecWhenMapped waits for the supervisor to write the id maps through
// newuidmap, then executes the agent again: capabilities are computed at
// execve, and at the first one the agent's uid was not mapped yet, so it
// has none in its own namespace until it is root there at an execve.
func reexecWhenMapped() {
	var b [64]byte
	if n, err := unix.Read(controlFD, b[:]); err != nil || n == 0 {
		os.Exit(ExitOwnError) // the supervisor is gone; it reports
	}
	os.Setenv(childEnv, stageAgent)
	err := unix.Exec("/proc/self/exe", os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "netns-run: sandbox agent: re-exec after id mapping: %v\n", err)
	os.Exit(ExitOwnError)
}

func runAgent(conn *net.UnixConn) int {
	m, _, err := recv(conn)
	if err != nil || m.Spec == nil {
		return ExitOwnError // the supervisor is gone or broken; it reports
	}
	spec := m.Spec
	if len(spec.Argv) == 0 {
		return fail(conn, ExitOwnError, "no command given")
	}
	path, err := exec.LookPath(spec.Argv[0])
	if err != nil {
		return fail(conn, lookPathStatus(err), "%s", lookPathMessage(spec.Argv[0], err))
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		return fail(conn, ExitOwnError, "set hostname: %v", err)
	}
	link, err := tap.Make(spec.Link)
	if err != nil {
		return fail(conn, ExitOwnError, "make %s: %v", spec.Link.Name, err)
	}
	var warnings []string
	if err := hosts.Place(spec.Files); err != nil {
		warnings = append(warnings, err.Error())
	}
	mode := link.Mode
	err = send(conn, message{Link: &mode, Warnings: warnings}, link.FD)
	unix.Close(link.FD)
	if err != nil {
		return ExitOwnError
	}
	if m, _, err := recv(conn); err != nil || !m.Start {
		return ExitOwnError
	}
	return runCommand(conn, path, spec)
}

// runCommand starts the command, forwards the signals the agent receives
// and returns the command's exit status. When the command ends, whatever
// it left running in the sandbox is killed, as Docker stops a container
// with its main process: the agent is their subreaper, so every orphan
// comes back to it.
func runCommand(conn *net.UnixConn, path string, spec *Spec) int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail(conn, ExitOwnError, "become subreaper: %v", err)
	}
	// Catch (not ignore: ignored signals would be inherited) before start.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	cmd := exec.Command(path)
	cmd.Args = spec.Argv
	cmd.Env = withoutMarker(spec.Env)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		code := lookPathStatus(err)
		send(conn, message{Error: lookPathMessage(spec.Argv[0], err), Code: code}, -1)
		return code
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	ws := waitFor(cmd.Process.Pid)
	close(done)
	killRemaining()
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// waitFor reaps children, orphans included, until pid ends. cmd.Wait is
// not used: its wait on one pid would leave orphans as zombies.
func waitFor(pid int) unix.WaitStatus {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || got == pid {
			return ws
		}
	}
}

// killRemaining kills and reaps every process left in the sandbox.
func killRemaining() {
	for {
		for _, pid := range childrenOf(os.Getpid()) {
			unix.Kill(pid, unix.SIGKILL)
		}
		if _, err := unix.Wait4(-1, nil, 0, nil); err == unix.ECHILD {
			return
		}
	}
}

// childrenOf lists the pids whose parent is ppid.
func childrenOf(ppid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses: parse after the last ')'.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			kids = append(kids, pid)
		}
	}
	return kids
}

// fail reports an error to the supervisor and returns its exit status.
func fail(conn *net.UnixConn, code int, format string, a ...any) int {
	send(conn, message{Error: fmt.Sprintf(format, a...), Code: code}, -1)
	return code
}

// forwardedSignals are passed on to the command, as docker run's sig-proxy.
var forwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
}

// ForwardedSignals lists the signals a supervisor should pass to the agent.
func ForwardedSignals() []os.Signal { return forwardedSignals }

func withoutMarker(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, childEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func lookPathStatus(err error) int {
	if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOEXEC) {
		return ExitCannotInvoke
	}
	return ExitNotFound
}

func lookPathMessage(name string, err error) string {
	if lookPathStatus(err) == ExitCannotInvoke {
		return fmt.Sprintf("cannot run %s: permission denied (is it executable?)", name)
	}
	return fmt.Sprintf("%s: executable file not found in $PATH", name)
}
