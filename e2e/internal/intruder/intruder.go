// Package intruder tries a SOCK_SEQPACKET unix socket and says what came
// back, or tries to listen on a TCP address, or runs a command (netns-run
// aimed at another user's runtime directory). The e2e launcher runs Serve
// as a second unprivileged user, so that the tests can ask another uid to
// try their sockets, ports and sandboxes; the tests call Try themselves
// for the control (the owner must get an answer).
//
// The tests talk to the intruder over a stream unix socket: one JSON
// Request per connection, answered by one JSON Result.
package intruder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Request asks for one try: of the socket at Path; or, with Listen, of a
// TCP listener on that address; or, with Run, of that command (with Env
// added to a minimal environment).
type Request struct {
	Path    string   `json:"path,omitempty"`
	Payload []byte   `json:"payload,omitempty"` // sent as one packet
	Listen  string   `json:"listen,omitempty"`
	Run     []string `json:"run,omitempty"`
	Env     []string `json:"env,omitempty"`
}

// Outcome is how a try ended.
type Outcome string

const (
	// ConnectFailed: the socket could not be reached or connected to.
	ConnectFailed Outcome = "connect failed"
	// Closed: connected, but the server closed the connection without
	// sending anything.
	Closed Outcome = "closed without a reply"
	// Replied: the server sent a packet back.
	Replied Outcome = "replied"
	// NoAnswer: the server neither replied nor closed in time.
	NoAnswer Outcome = "no answer"
	// Failed: any other error.
	Failed Outcome = "failed"
	// Listened: the TCP address was free to this user (the listener is
	// closed at once).
	Listened Outcome = "listened"
	// ListenFailed: it was not (Error says why).
	ListenFailed Outcome = "listen failed"
	// Exited: the command ran; Status is its exit status, Reply its
	// output (stdout then stderr).
	Exited Outcome = "exited"
)

// Result says what a try got, and who tried.
type Result struct {
	UID     int     `json:"uid"`
	Outcome Outcome `json:"outcome"`
	Status  int     `json:"status,omitempty"`
	Reply   []byte  `json:"reply,omitempty"`
	Error   string  `json:"error,omitempty"`
}

func (r Result) String() string {
	s := fmt.Sprintf("uid %d: %s", r.UID, r.Outcome)
	if r.Reply != nil {
		s += fmt.Sprintf(" %q", r.Reply)
	}
	if r.Error != "" {
		s += " (" + r.Error + ")"
	}
	return s
}

// Try connects to the socket at path, sends payload as one packet and
// waits up to timeout for a reply or the end of the connection.
func Try(path string, payload []byte, timeout time.Duration) Result {
	res := Result{UID: os.Getuid()}
	c, err := dial(path)
	if err != nil {
		res.Outcome, res.Error = ConnectFailed, err.Error()
		return res
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	_, werr := c.Write(payload)
	// Read even if the write failed: a server may answer before it reads,
	// and close before our packet comes.
	buf := make([]byte, 1<<16)
	n, err := c.Read(buf)
	if errors.Is(err, syscall.ECONNRESET) {
		// A server that closed with our packet unread resets the
		// connection; the kernel reports that before a reply it sent
		// first, which the next read gets.
		if n2, _ := c.Read(buf); n2 > 0 {
			n, err = n2, nil
		}
	}
	if n > 0 {
		res.Outcome, res.Reply = Replied, buf[:n]
		return res
	}
	res.Outcome, res.Error = classify(err), "read: "+err.Error()
	if werr != nil {
		res.Error = "write: " + werr.Error() + "; " + res.Error
	}
	return res
}

func classify(err error) Outcome {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Closed
	case errors.As(err, &ne) && ne.Timeout():
		return NoAnswer
	}
	return Failed
}

// dial connects through a descriptor of the socket's directory, so that a
// path longer than a socket address takes (a deep test directory) works.
func dial(path string) (*net.UnixConn, error) {
	dir, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", filepath.Dir(path), err)
	}
	defer unix.Close(dir)
	addr := "/proc/self/fd/" + strconv.Itoa(dir) + "/" + filepath.Base(path)
	return net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: addr, Net: "unixpacket"})
}

// tryTimeout bounds one try the intruder makes for a test.
const tryTimeout = 5 * time.Second

// Serve answers requests on l until it is closed.
func Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go serve(c)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(tryTimeout + 5*time.Second))
	var req Request
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		_ = json.NewEncoder(c).Encode(Result{UID: os.Getuid(), Outcome: Failed, Error: "bad request: " + err.Error()})
		return
	}
	var res Result
	switch {
	case req.Listen != "":
		res = tryListen(req.Listen)
	case len(req.Run) > 0:
		res = tryRun(req.Run, req.Env)
	default:
		res = Try(req.Path, req.Payload, tryTimeout)
	}
	_ = json.NewEncoder(c).Encode(res)
}

func tryListen(addr string) Result {
	res := Result{UID: os.Getuid(), Outcome: Listened}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		res.Outcome, res.Error = ListenFailed, err.Error()
		return res
	}
	l.Close()
	return res
}

func tryRun(argv, env []string) Result {
	res := Result{UID: os.Getuid(), Outcome: Exited}
	ctx, cancel := context.WithTimeout(context.Background(), tryTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res.Reply = out.Bytes()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.Status = exit.ExitCode()
	case err != nil:
		res.Outcome, res.Error = Failed, err.Error()
	}
	return res
}

// Ask has the intruder listening on sock try req.
func Ask(ctx context.Context, sock string, req Request) (Result, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return Result{}, fmt.Errorf("reach the intruder: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Result{}, fmt.Errorf("ask the intruder: %w", err)
	}
	var res Result
	if err := json.NewDecoder(c).Decode(&res); err != nil {
		return Result{}, fmt.Errorf("the intruder's answer: %w", err)
	}
	return res, nil
}
