package slirp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/stack"
	"golang.org/x/sys/unix"
)

// The API socket (-a): one JSON request per connection, newline-terminated,
// the client's write side then shut; one reply in one write, then the
// server closes. Podman reads the reply once, into 2048 bytes; RootlessKit
// reads to EOF.
const (
	maxRequest  = 4096
	readTimeout = 5 * time.Second
)

type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
}

// hostfwd is add_hostfwd's arguments and list_hostfwd's entries.
type hostfwd struct {
	ID        int    `json:"id,omitempty"`
	Proto     string `json:"proto"`
	HostAddr  string `json:"host_addr"`
	HostPort  int    `json:"host_port"`
	GuestAddr string `json:"guest_addr"`
	GuestPort int    `json:"guest_port"`
}

type apiError struct {
	Desc string `json:"desc"`
}

type reply struct {
	Return any       `json:"return,omitempty"`
	Error  *apiError `json:"error,omitempty"`
	// Entries repeats list_hostfwd's entries at the top level:
	// slirp4netns's documentation puts them under "return", its 1.2.0
	// binary at the top level only, and a client may follow either.
	Entries *[]hostfwd `json:"entries,omitempty"`
}

// forwards are the host forwards made through the API, served like -p:
// every client keeps its own address in the namespace.
type forwards struct {
	gw    *stack.Gateway
	guest netip.Addr

	mu     sync.Mutex
	nextID int
	byID   map[int]*hostForward
}

type hostForward struct {
	entry     hostfwd
	listeners []*forward.Listener
	cancel    context.CancelFunc
}

func newForwards(gw *stack.Gateway, guest netip.Addr) *forwards {
	return &forwards{gw: gw, guest: guest, byID: map[int]*hostForward{}}
}

// add binds the forward and serves it until it is removed or ctx ends.
func (f *forwards) add(ctx context.Context, h hostfwd) (int, error) {
	var proto forward.Proto
	switch h.Proto {
	case "tcp":
		proto = forward.TCP
	case "udp":
		proto = forward.UDP
	default:
		return 0, fmt.Errorf("bad request: proto must be tcp or udp, not %.64q", h.Proto)
	}
	if h.HostPort < 1 || h.HostPort > 65535 || h.GuestPort < 1 || h.GuestPort > 65535 {
		return 0, errors.New("bad request: host_port and guest_port must be 1 to 65535")
	}
	m := forward.Mapping{HostPort: uint16(h.HostPort), ContainerPort: uint16(h.GuestPort), Proto: proto}
	if h.HostAddr != "" {
		a, err := netip.ParseAddr(h.HostAddr)
		if err != nil {
			return 0, fmt.Errorf("bad request: host_addr %.64q is not an address", h.HostAddr)
		}
		m.HostIP = a
	}
	guest := f.guest
	if h.GuestAddr != "" {
		a, err := netip.ParseAddr(h.GuestAddr)
		if err != nil || !a.Is4() {
			return 0, fmt.Errorf("bad request: guest_addr %.64q is not an IPv4 address", h.GuestAddr)
		}
		guest = a
	}
	ls, err := forward.Bind([]forward.Mapping{m})
	if err != nil {
		return 0, err
	}
	fctx, cancel := context.WithCancel(ctx)
	for _, l := range ls {
		go l.Serve(fctx, forward.Member{IP: guest}, f.gw, nil) // the address add_hostfwd names, whatever the client
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	h.ID = f.nextID
	h.GuestAddr = guest.String()
	if h.HostAddr == "" {
		h.HostAddr = "0.0.0.0"
	}
	f.byID[h.ID] = &hostForward{entry: h, listeners: ls, cancel: cancel}
	return h.ID, nil
}

func (f *forwards) remove(id int) error {
	f.mu.Lock()
	h, ok := f.byID[id]
	delete(f.byID, id)
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("bad request: no forward with id %d", id)
	}
	h.cancel()
	for _, l := range h.listeners {
		l.Close()
	}
	return nil
}

func (f *forwards) list() []hostfwd {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]hostfwd, 0, len(f.byID))
	for _, h := range f.byID {
		out = append(out, h.entry)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// answer runs one request. The values it quotes in errors are cut to 64
// characters, so that a reply fits the 2048 bytes Podman reads.
func (f *forwards) answer(ctx context.Context, b []byte) reply {
	fail := func(err error) reply { return reply{Error: &apiError{Desc: err.Error()}} }
	var req request
	if err := json.Unmarshal(bytes.TrimSpace(b), &req); err != nil {
		return fail(fmt.Errorf("bad request: %v", err))
	}
	switch req.Execute {
	case "add_hostfwd":
		var h hostfwd
		if err := json.Unmarshal(req.Arguments, &h); err != nil {
			return fail(fmt.Errorf("bad request: add_hostfwd: %v", err))
		}
		id, err := f.add(ctx, h)
		if err != nil {
			return fail(err)
		}
		return reply{Return: map[string]int{"id": id}}
	case "remove_hostfwd":
		var a struct {
			ID *int `json:"id"`
		}
		if err := json.Unmarshal(req.Arguments, &a); err != nil || a.ID == nil {
			return fail(errors.New("bad request: remove_hostfwd wants {\"id\": N}"))
		}
		if err := f.remove(*a.ID); err != nil {
			return fail(err)
		}
		return reply{Return: struct{}{}}
	case "list_hostfwd":
		entries := f.list()
		return reply{Return: map[string][]hostfwd{"entries": entries}, Entries: &entries}
	default:
		return fail(fmt.Errorf("bad request: unknown execute %.64q (add_hostfwd, remove_hostfwd, list_hostfwd)", req.Execute))
	}
}

// api is the listening API socket.
type api struct {
	path   string
	ln     *net.UnixListener
	fwd    *forwards
	remove func() error // unlinks path; --enable-sandbox replaces it
}

// listenAPI binds the API socket at path, replacing a stale socket file
// left by a process that was killed (a live one answers, and is kept). A
// path too long for a socket address (Podman's, under a deep runtime
// directory) is bound through a descriptor of its directory.
func listenAPI(path string, fwd *forwards) (*api, error) {
	addr, dirFD, err := wire.SocketAddr(path)
	if err != nil {
		return nil, fmt.Errorf("API socket: %w", err)
	}
	if dirFD >= 0 {
		defer unix.Close(dirFD)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", addr); err == nil {
			c.Close()
			return nil, fmt.Errorf("API socket %s: another process listens there", path)
		}
		os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false) // close removes it by its real path
	return &api{path: path, ln: ln, fwd: fwd, remove: func() error { return os.Remove(path) }}, nil
}

func (a *api) serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { a.ln.Close() })
	defer stop()
	for {
		c, err := a.ln.AcceptUnix()
		if err != nil {
			return
		}
		go a.serveConn(ctx, c)
	}
}

func (a *api) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(readTimeout))
	b, err := io.ReadAll(io.LimitReader(c, maxRequest+1))
	var rep reply
	switch {
	case len(b) > maxRequest:
		rep = reply{Error: &apiError{Desc: fmt.Sprintf("bad request: larger than %d bytes", maxRequest)}}
	case err != nil && len(b) == 0:
		return
	default:
		// A client that does not shut its write side (or sends more
		// after the newline) is served what came before the deadline.
		rep = a.fwd.answer(ctx, b)
	}
	out, _ := json.Marshal(rep)
	c.Write(out) // one write
}

func (a *api) close() {
	a.ln.Close()
	a.remove()
}
