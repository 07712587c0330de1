// Package wire is the one wire layer between netns-run's own processes
// (CLI, supervisor, agent, daemon): JSON messages over SOCK_SEQPACKET unix
// sockets, one message per packet (so no framing of our own), descriptors
// passed as SCM_RIGHTS, the binary frames of the dial channel, and the
// peer-credential check that every unix socket server makes. See
// docs/ARCHITECTURE.md, Processes.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxMessage bounds one packet; the largest, a sandbox's spec with its
// hosts files, is a few KiB.
const MaxMessage = 256 << 10

// MaxFDs bounds the descriptors one message may carry: the kernel's own
// limit for one SCM_RIGHTS message (SCM_MAX_FD).
const MaxFDs = 253

// DecodeError is a message that arrived but could not be taken: cut short
// (MSG_TRUNC, MSG_CTRUNC), not JSON of the expected type, or not exactly one
// member of its union. The socket itself is fine; its descriptors are
// closed.
type DecodeError struct{ Err error }

func (e *DecodeError) Error() string { return "bad message: " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// Validator is a message that checks itself once decoded (a tagged union:
// exactly one member set). Recv calls it.
type Validator interface{ Validate() error }

// Send writes v as one JSON packet with fds attached. The fds stay the
// caller's: the kernel passes duplicates.
func Send(c *net.UnixConn, v any, fds ...int) error {
	if len(fds) > MaxFDs {
		return fmt.Errorf("send message: %d descriptors, at most %d", len(fds), MaxFDs)
	}
	b, err := marshal(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("encode message: %d bytes, at most %d", len(b), MaxMessage)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	return nil
}

// marshal is json.Marshal(v), byte for byte. A tagged union (a struct
// of omitempty pointers, one of them set) is encoded as its one member
// under its name: json.Marshal of the union would build, and cache for
// the process's life, the encoders of every member's type, most of them
// never sent by that process (docs/ARCHITECTURE.md, Measured facts:
// Memory of an idle member).
func marshal(v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Struct || !isUnion(rv.Type()) {
		return json.Marshal(v)
	}
	var name string
	var member reflect.Value
	for i := range rv.NumField() {
		if fv := rv.Field(i); !fv.IsNil() {
			if member.IsValid() {
				return json.Marshal(v)
			}
			name, member = unionKey(rv.Type().Field(i)), fv
		}
	}
	if !member.IsValid() {
		return json.Marshal(v)
	}
	inner, err := json.Marshal(member.Interface())
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(name)+len(inner)+5)
	b = append(b, `{"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	b = append(b, inner...)
	return append(b, '}'), nil
}

// unmarshal is json.Unmarshal(b, v), with the same result and error. A
// message as marshal writes a union's, {"name":VALUE}, is decoded into
// that member alone, for the reason marshal has; anything else, an
// error included, goes to json.Unmarshal whole.
func unmarshal(b []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct || !isUnion(rv.Elem().Type()) || !rv.Elem().IsZero() {
		return json.Unmarshal(b, v)
	}
	u := rv.Elem()
	if i := unionMember(u.Type(), b); i >= 0 {
		name := unionKey(u.Type().Field(i))
		if json.Unmarshal(b[len(name)+4:len(b)-1], u.Field(i).Addr().Interface()) == nil {
			return nil
		}
		u.SetZero() // for json.Unmarshal's own error
	}
	return json.Unmarshal(b, v)
}

// unionMember is the index of the member that b, {"name":VALUE}, names
// exactly, or -1. A key that only folds to a name, one written with
// escapes, or more than one key (VALUE then is no one JSON value) are
// json.Unmarshal's.
func unionMember(t reflect.Type, b []byte) int {
	if len(b) < 6 || string(b[:2]) != `{"` || b[len(b)-1] != '}' {
		return -1
	}
	for i := range t.NumField() {
		name := unionKey(t.Field(i))
		if len(b) > len(name)+5 && string(b[2:2+len(name)]) == name && string(b[2+len(name):4+len(name)]) == `":` {
			return i
		}
	}
	return -1
}

// isUnion: t is a tagged union, every field an omitempty pointer under a
// plain key.
func isUnion(t reflect.Type) bool {
	for i := range t.NumField() {
		f := t.Field(i)
		_, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || f.Type.Kind() != reflect.Pointer || opts != "omitempty" || !plainKey(unionKey(f)) {
			return false
		}
	}
	return t.NumField() > 0
}

func unionKey(f reflect.StructField) string {
	key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return key
}

// plainKey: a JSON object key that encoding/json writes as it is.
func plainKey(k string) bool {
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return k != ""
}

// SendFiles is Send with the descriptors of files, taken without putting
// them in blocking mode (as File.Fd would).
func SendFiles(c *net.UnixConn, v any, files []*os.File) error {
	fds := make([]int, 0, len(files))
	var rec func(i int) error
	rec = func(i int) error {
		if i == len(files) {
			return Send(c, v, fds...)
		}
		rc, err := files[i].SyscallConn()
		if err != nil {
			return fmt.Errorf("descriptor of %s: %w", files[i].Name(), err)
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			fds = append(fds, int(fd))
			serr = rec(i + 1)
		}); err != nil {
			return fmt.Errorf("descriptor of %s: %w", files[i].Name(), err)
		}
		return serr
	}
	return rec(0)
}

// Recv reads one packet into v and returns the descriptors that came with
// it (close-on-exec, the caller's to close). io.EOF means the peer is gone;
// a *DecodeError, only that this message was bad (its descriptors are
// closed). If v is a Validator, a message it refuses is a *DecodeError.
func Recv(c *net.UnixConn, v any) ([]int, error) {
	return recvBounded(c, v, MaxMessage, MaxFDs)
}

func recvBounded(c *net.UnixConn, v any, maxBytes, maxFDs int) ([]int, error) {
	size, err := nextPacketSize(c)
	if err != nil {
		return nil, err
	}
	// One byte more than the bound, so that a larger packet reads as
	// truncated; sized to the packet, so that a connection waiting for
	// its next message holds no buffer (members' sessions wait for hours).
	b := make([]byte, min(size, maxBytes)+1)
	oob := make([]byte, unix.CmsgSpace(4*maxFDs))
	n, oobn, flags, _, err := c.ReadMsgUnix(b, oob)
	// Go reads an empty packet as EOF, also one that carries descriptors:
	// that one is a bad message, whose descriptors are closed below.
	if err != nil && !(errors.Is(err, io.EOF) && oobn > 0) {
		return nil, err
	}
	if n > maxBytes {
		flags |= unix.MSG_TRUNC
	}
	fds, ferr := ParseRights(oob[:oobn])
	switch {
	case ferr != nil:
		CloseFDs(fds)
		return nil, &DecodeError{ferr}
	case flags&unix.MSG_TRUNC != 0:
		CloseFDs(fds)
		return nil, &DecodeError{fmt.Errorf("message larger than %d bytes", maxBytes)}
	case flags&unix.MSG_CTRUNC != 0:
		CloseFDs(fds)
		return nil, &DecodeError{errors.New("more descriptors than a message may carry")}
	case n == 0 && len(fds) == 0:
		return nil, io.EOF
	}
	if err := unmarshal(b[:n], v); err != nil {
		CloseFDs(fds)
		return nil, &DecodeError{err}
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			CloseFDs(fds)
			return nil, &DecodeError{err}
		}
	}
	return fds, nil
}

// nextPacketSize waits, in the netpoller, for the next packet and returns
// its length without taking it (MSG_PEEK|MSG_TRUNC on a SOCK_SEQPACKET
// socket gives the whole length); 0 is also the peer gone.
func nextPacketSize(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, perr = unix.Recvfrom(int(fd), nil, unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT)
		return perr != unix.EAGAIN
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return 0, &net.OpError{Op: "read", Net: "unixpacket", Err: err}
	}
	return n, nil
}

// ParseRights returns the descriptors of SCM_RIGHTS control messages
// read by (*net.UnixConn).ReadMsgUnix, which has them close-on-exec
// already (MSG_CMSG_CLOEXEC). On an error the descriptors found so far
// come back too, for the caller to close.
func ParseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue // not SCM_RIGHTS
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// CloseFDs closes descriptors received and not taken.
func CloseFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// SocketPair returns a connected SOCK_SEQPACKET pair: this process's end
// as a connection and the other end as a file to hand to a child process
// or to send.
func SocketPair(name string) (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	own := os.NewFile(uintptr(fds[0]), name)
	defer own.Close()
	conn, err := FileConn(own)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return conn, os.NewFile(uintptr(fds[1]), name+"-peer"), nil
}

// FileConn makes a connection of a unix socket's file (a duplicate: f stays
// the caller's).
func FileConn(f *os.File) (*net.UnixConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s: not a unix socket (%T)", f.Name(), c)
	}
	return uc, nil
}

// ErrOtherUser: the peer of a unix socket is another user.
var ErrOtherUser = errors.New("the peer is another user")

// CheckPeer admits a peer of our own uid only. Every socket server calls
// it first and closes a refused connection without a word: the sockets
// are 0600 in a 0700 directory, and this holds if that is ever loosened.
func CheckPeer(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("%w (uid %d)", ErrOtherUser, cred.Uid)
	}
	return nil
}

// Dial connects to a SOCK_SEQPACKET unix socket, also at a path too long
// for a socket address.
func Dial(path string) (*net.UnixConn, error) {
	addr, dirFD, err := SocketAddr(path)
	if err != nil {
		return nil, err
	}
	if dirFD >= 0 {
		defer unix.Close(dirFD)
	}
	return net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: addr, Net: "unixpacket"})
}

// Listen binds a SOCK_SEQPACKET unix socket at path (also one too long for
// a socket address), mode 0600. Closing the listener does not remove the
// file: the caller does.
func Listen(path string) (*net.UnixListener, error) {
	addr, dirFD, err := SocketAddr(path)
	if err != nil {
		return nil, err
	}
	if dirFD >= 0 {
		defer unix.Close(dirFD)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: addr, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Exchange is a one-shot request: it sends req on c and reads the one
// reply into rep (a descriptor that comes with it is closed).
func Exchange(c *net.UnixConn, req, rep any) error {
	if err := Send(c, req); err != nil {
		return err
	}
	fds, err := Recv(c, rep)
	CloseFDs(fds)
	return err
}
