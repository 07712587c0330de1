package slirp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netns-run/netns-run/internal/ipam"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
)

// Opening the TAP means entering the target's network namespace, and for a
// target whose namespace belongs to another user namespace (RootlessKit
// runs slirp4netns in the initial one, as the user), its user namespace
// too. A Go process cannot join a user namespace (setns fails with EINVAL
// in a multithreaded process), so the step is done by a helper:
// util-linux's nsenter, single-threaded C, joins the namespaces and then
// executes this binary in tapHelperEnv mode, which opens (and with -c
// configures) the TAP and hands its descriptor back over an inherited
// socketpair. One path for every target keeps the main process in its own
// namespaces. See docs/SLIRP4NETNS.md.

// tapHelperEnv carries the helper's request (tapRequest, as JSON).
const tapHelperEnv = "_NETNS_RUN_SLIRP_TAP"

// helperFD is where the helper finds its end of the socketpair.
const helperFD = 3

// helperTimeout bounds the helper: nsenter and one TAP.
const helperTimeout = 20 * time.Second

// tapRequest is what the helper is asked to do.
type tapRequest struct {
	Name      string      `json:"name"`
	Configure *tap.Config `json:"configure,omitempty"` // -c: lo, the TAP's MAC, MTU, address and route
}

// open makes (-c) or attaches to the TAP in the current thread's network
// namespace.
func (req tapRequest) open() (tap.Link, error) {
	if req.Configure != nil {
		return tap.Make(*req.Configure)
	}
	return tap.Attach(req.Name)
}

// tapReply carries the TAP's descriptor, or why not.
type tapReply struct {
	Error string `json:"error,omitempty"`
}

// IsTAPHelper reports whether this process is the helper.
func IsTAPHelper() bool { return os.Getenv(tapHelperEnv) != "" }

// TAPHelperMain is the helper, in the target's namespaces: it never
// returns.
func TAPHelperMain() {
	f := os.NewFile(helperFD, "slirp-tap-helper")
	conn, err := wire.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "slirp4netns: TAP helper: %v\n", err)
		os.Exit(1)
	}
	var req tapRequest
	link := tap.Link{FD: -1}
	if err = json.Unmarshal([]byte(os.Getenv(tapHelperEnv)), &req); err == nil {
		link, err = req.open()
	}
	if err != nil {
		wire.Send(conn, tapReply{Error: fmt.Sprintf("open %s: %v", req.Name, err)})
		os.Exit(1)
	}
	if err := wire.Send(conn, tapReply{}, link.FD); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// openTAP returns the descriptor of the target's TAP, through the helper.
func openTAP(o Options) (int, error) {
	req := tapRequest{Name: o.TAP}
	if o.Configure {
		mac := o.MAC
		if mac == nil {
			mac = ipam.MAC(o.Guest())
		}
		req.Configure = &tap.Config{
			Name: o.TAP, Mode: tap.ModeTAP, MTU: o.MTU, MAC: mac.String(), PeerMAC: ipam.MAC(o.Gateway()).String(),
			Address: netip.PrefixFrom(o.Guest(), o.CIDR.Bits()), Gateway: o.Gateway(),
			SkipDAD: o.IPv6,
		}
	}
	netPath, userPath, err := targetNamespaces(o)
	if err != nil {
		return -1, err
	}
	if userPath == "" {
		return openTAPIn(netPath, req)
	}
	args := []string{"--user=" + userPath, "--preserve-credentials", "--net=" + netPath}
	self, err := executable()
	if err != nil {
		return -1, err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return -1, err
	}
	conn, peer, err := wire.SocketPair("slirp-tap")
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	cmd := exec.Command("nsenter", append(args, "--", self)...)
	cmd.Env = append(os.Environ(), tapHelperEnv+"="+string(b))
	cmd.ExtraFiles = []*os.File{peer}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		peer.Close()
		if errors.Is(err, exec.ErrNotFound) {
			return -1, errors.New("nsenter (util-linux) is needed to open the TAP in the target's namespaces: install util-linux")
		}
		return -1, fmt.Errorf("start the TAP helper: %w", err)
	}
	peer.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	conn.SetReadDeadline(time.Now().Add(helperTimeout))
	var rep tapReply
	fds, rerr := wire.Recv(conn, &rep)
	if rerr != nil {
		cmd.Process.Kill()
		werr := <-done
		return -1, fmt.Errorf("join the target's namespaces (%s) and open %s: %v", describeTarget(o), o.TAP, errors.Join(rerr, werr))
	}
	<-done
	if rep.Error != "" || len(fds) != 1 {
		wire.CloseFDs(fds)
		return -1, fmt.Errorf("%s in %s: %s", o.TAP, describeTarget(o), rep.Error)
	}
	return fds[0], nil
}

// targetNamespaces are the target's network namespace and, when that
// belongs to a user namespace other than ours, the user namespace to join
// first (else "").
func targetNamespaces(o Options) (netPath, userPath string, err error) {
	netPath, userPath = o.Target, o.UsernsPath
	if o.NetnsType == "pid" {
		netPath = "/proc/" + o.Target + "/ns/net"
		if userPath == "" {
			userPath = "/proc/" + o.Target + "/ns/user"
		}
	}
	if _, err := os.Stat(netPath); err != nil {
		return "", "", fmt.Errorf("target network namespace: %w", err)
	}
	if userPath != "" {
		other, err := otherUserNS(userPath)
		if err != nil {
			return "", "", err
		}
		if !other {
			userPath = ""
		}
	}
	return netPath, userPath, nil
}

// openTAPIn opens the TAP from a thread moved into the network namespace
// at netPath, when no user namespace has to be joined (Podman's case): a
// thread may change its network namespace, only not its user namespace,
// so no helper is needed and the start is about 9 ms shorter. The thread
// is given back only once it is home again; otherwise it ends with its
// goroutine. The Go runtime starts no thread from a locked one, so nothing
// else runs in the target's namespace.
func openTAPIn(netPath string, req tapRequest) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		fd, home, err := openInNamespace(netPath, req)
		if home {
			runtime.UnlockOSThread()
		}
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

// openInNamespace runs on a locked thread; home says whether the thread is
// back in its own network namespace.
func openInNamespace(netPath string, req tapRequest) (fd int, home bool, err error) {
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, true, fmt.Errorf("own network namespace: %w", err)
	}
	defer unix.Close(own)
	target, err := unix.Open(netPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, true, fmt.Errorf("target network namespace: %w", err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return -1, true, fmt.Errorf("enter the network namespace %s: %w", netPath, err)
	}
	link, err := req.open()
	home = unix.Setns(own, unix.CLONE_NEWNET) == nil
	if err != nil {
		return -1, home, fmt.Errorf("open %s in %s: %w", req.Name, netPath, err)
	}
	return link.FD, home, nil
}

// otherUserNS reports whether path names a user namespace other than this
// process's (joining one's own is refused by the kernel).
func otherUserNS(path string) (bool, error) {
	var there, here unix.Stat_t
	if err := unix.Stat(path, &there); err != nil {
		return false, fmt.Errorf("target user namespace: %w", err)
	}
	if err := unix.Stat("/proc/self/ns/user", &here); err != nil {
		return false, fmt.Errorf("own user namespace: %w", err)
	}
	return there.Ino != here.Ino || there.Dev != here.Dev, nil
}

func describeTarget(o Options) string {
	if o.NetnsType == "pid" {
		return "pid " + o.Target
	}
	s := o.Target
	if o.UsernsPath != "" {
		s += ", user namespace " + o.UsernsPath
	}
	return s
}
