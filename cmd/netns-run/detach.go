//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/netns-run/netns-run/internal/runner"
)

// A detached run is this binary started again in its own session, with
// these variables set: its id (which names its log) and the fd of a pipe
// on which it says when the command runs.
const (
	detachedIDEnv = "_NETNS_RUN_DETACHED_ID"
	readyFD       = 3
)

// detachedChildID is the id of the detached run this process is, or
// empty; takeDetachedID sets it.
var detachedChildID string

// takeDetachedID takes the detached run's id out of the environment, so
// that the daemon this process may start and the command do not inherit
// it: the daemon would parse its command line as a detached run's
// (newDetachedRootCommand), and a netns-run in the sandbox would take
// itself for one.
func takeDetachedID() {
	detachedChildID = os.Getenv(detachedIDEnv)
	os.Unsetenv(detachedIDEnv)
}

func isDetachedChild() bool { return detachedChildID != "" }

func detachedID() string { return detachedChildID }

// startDetached runs the same command line again in the background and
// returns once its command runs, printing the id, as docker run -d.
func startDetached(string) error {
	id, err := runner.NewID()
	if err != nil {
		return err
	}
	reg, err := openRegistry()
	if err != nil {
		return err
	}
	logPath := filepath.Join(reg.Dir(), id+".log")
	var logf *os.File
	for try := 0; ; try++ {
		// The registry removes its directory when it empties: make it again
		// if that happened in between.
		os.MkdirAll(reg.Dir(), 0o700)
		if logf, err = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil || try == 3 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("create log: %w", err)
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	self, err := os.Executable()
	if err != nil {
		pw.Close()
		return err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), detachedIDEnv+"="+id)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("start detached sandbox: %w", err)
	}
	pw.Close()
	msg, _ := io.ReadAll(pr)
	if s := strings.TrimSpace(string(msg)); s != "ok" {
		cmd.Wait()
		os.Remove(logPath)
		if s == "" {
			s = "the detached sandbox ended before its command ran"
		}
		return errors.New(s)
	}
	fmt.Println(id)
	return nil
}

// readyReporter tells the waiting parent of a detached run whether the
// command runs, once.
func readyReporter() func(error) {
	// Nothing this process starts (the agent, the network daemon) may hold
	// the pipe: the parent waits for its end.
	syscall.CloseOnExec(readyFD)
	f := os.NewFile(readyFD, "ready")
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			if err != nil {
				fmt.Fprintln(f, err)
			} else {
				fmt.Fprintln(f, "ok")
			}
			f.Close()
		})
	}
}
