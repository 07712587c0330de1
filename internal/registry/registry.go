// Package registry keeps the records of a user's sandboxes in their runtime
// directory: what ps, inspect, stop, logs and port read, and what tells the
// network daemon which address holders are still alive. A record belongs to
// its supervisor process; a record whose supervisor is gone is stale.
package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/netns-run/netns-run/forward"
	"golang.org/x/sys/unix"
)

// States of a record.
const (
	Running = "running"
	Exited  = "exited"
)

// recordVersion is the version of the record file's layout; write sets it.
// Version 0 (no version field) is the layout before published ports had
// JSON tags: see recordV0.
const recordVersion = 1

// Record is one sandbox.
type Record struct {
	Version   int        `json:"version"`
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Hostname  string     `json:"hostname"`
	Network   string     `json:"network"`
	NetworkID string     `json:"network_id,omitempty"`
	IP        netip.Addr `json:"ip,omitzero"`
	StaticIP  bool       `json:"static_ip,omitempty"`  // IP was asked for (--ip)
	StaticIP6 bool       `json:"static_ip6,omitempty"` // IP6 was asked for (--ip6)
	Prefix    int        `json:"prefix,omitempty"`
	Gateway   netip.Addr `json:"gateway,omitzero"`
	// IP6, Prefix6 and Gateway6: on a dual-stack network (the network's
	// IPv6 gateway, not the link-local next hop).
	IP6      netip.Addr        `json:"ip6,omitzero"`
	Prefix6  int               `json:"prefix6,omitempty"`
	Gateway6 netip.Addr        `json:"gateway6,omitzero"`
	MAC      string            `json:"mac,omitempty"`
	Aliases  []string          `json:"aliases,omitempty"`
	Ports    []forward.Mapping `json:"ports,omitempty"`
	Command  []string          `json:"command"`
	Env      []string          `json:"env,omitempty"`   // -e and --env-file, as asked
	Links    []string          `json:"links,omitempty"` // --link, as Docker's HostConfig.Links: /NAME:/SELF/ALIAS
	// Tty: the command has a terminal of its own (run -t), which attach
	// reaches; OpenStdin: its input was asked for (run -i).
	Tty       bool      `json:"tty,omitempty"`
	OpenStdin bool      `json:"open_stdin,omitempty"`
	Created   time.Time `json:"created"`
	// Pid and PidStart identify the supervisor; a pid alone can be reused.
	Pid        int       `json:"pid"`
	PidStart   uint64    `json:"pid_start"`
	AgentPid   int       `json:"agent_pid,omitempty"`
	State      string    `json:"state"`
	ExitCode   int       `json:"exit_code"`
	Finished   time.Time `json:"finished,omitzero"`
	Detached   bool      `json:"detached,omitempty"`
	AutoRemove bool      `json:"auto_remove,omitempty"`
	LogPath    string    `json:"log_path,omitempty"`
	ExecSocket string    `json:"exec_socket,omitempty"`
	// ControlSocket takes network connect/disconnect for the supervisor.
	ControlSocket string `json:"control_socket,omitempty"`
	// Extra are the networks joined later with network connect.
	Extra []Endpoint `json:"extra,omitempty"`
}

// Endpoint is a sandbox's place on a network it was connected to.
type Endpoint struct {
	Network   string     `json:"network"`
	NetworkID string     `json:"network_id"`
	Interface string     `json:"interface"`
	IP        netip.Addr `json:"ip"`
	Prefix    int        `json:"prefix"`
	Gateway   netip.Addr `json:"gateway"`
	MAC       string     `json:"mac"`
	Aliases   []string   `json:"aliases,omitempty"`
	// IP6, Prefix6 and Gateway6: on a dual-stack network.
	IP6      netip.Addr `json:"ip6,omitzero"`
	Prefix6  int        `json:"prefix6,omitempty"`
	Gateway6 netip.Addr `json:"gateway6,omitzero"`
}

// ShortID is the 12-hex-digit form Docker prints.
func (r Record) ShortID() string {
	if len(r.ID) < 12 {
		return r.ID
	}
	return r.ID[:12]
}

// ErrNotFound is returned by Get for an unknown name or id.
var ErrNotFound = errors.New("no such sandbox")

// Registry is the records directory.
type Registry struct{ dir string }

// RuntimeDir is $XDG_RUNTIME_DIR/netns-run, or /tmp/netns-run-UID where
// there is no XDG_RUNTIME_DIR; created 0700 and checked to be the user's.
func RuntimeDir() (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	dir := filepath.Join(base, "netns-run")
	if base == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("netns-run-%d", os.Getuid()))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create runtime dir: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return "", fmt.Errorf("runtime dir: %w", err)
	}
	if int(st.Uid) != os.Getuid() || st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o077 != 0 {
		return "", fmt.Errorf("runtime dir %s must be a directory owned by you with mode 0700", dir)
	}
	return dir, nil
}

// OpenDefault opens the registry of RuntimeDir and returns that directory
// too (the daemon's socket lives there).
func OpenDefault() (string, *Registry, error) {
	rt, err := RuntimeDir()
	if err != nil {
		return "", nil, err
	}
	reg, err := Open(rt)
	return rt, reg, err
}

// Open opens the registry under the runtime dir. Its directory exists
// only while it holds records: nothing is left once the last sandbox ends.
func Open(runtimeDir string) (*Registry, error) {
	return &Registry{dir: filepath.Join(runtimeDir, "sandboxes")}, nil
}

// Dir is where records, logs and exec sockets live.
func (r *Registry) Dir() string { return r.dir }

func (r *Registry) path(id string) string { return filepath.Join(r.dir, id+".json") }

// lock serialises writers so that two sandboxes cannot take one name. The
// lock is the directory itself, which the last Remove deletes: a waiter
// that finds it deleted makes it again.
func (r *Registry) lock() (func(), error) {
	for {
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			return nil, fmt.Errorf("create registry: %w", err)
		}
		f, err := os.Open(r.dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("lock registry: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock registry: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err == nil && st.Nlink > 0 {
			return func() { f.Close() }, nil
		}
		f.Close()
	}
}

// Create adds a record; its name must be free.
func (r *Registry) Create(rec Record) error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	for _, other := range r.load() {
		if other.Name == rec.Name {
			return fmt.Errorf("the name %q is already in use by sandbox %s: choose another --name, or remove it with netns-run rm %s", rec.Name, other.ShortID(), rec.Name)
		}
	}
	return r.write(rec)
}

// Update changes a record in place.
func (r *Registry) Update(id string, change func(*Record)) error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := r.read(r.path(id))
	if err != nil {
		return err
	}
	change(&rec)
	return r.write(rec)
}

// Remove deletes a record and the files that go with it.
func (r *Registry) Remove(id string) error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	r.removeFiles(id)
	return nil
}

// removeFiles deletes a record's files, and the directory with the last
// (rmdir fails on a directory that is not empty). The lock is held.
func (r *Registry) removeFiles(id string) {
	for _, suffix := range []string{".json", ".log", ".sock", ".ctl"} {
		os.Remove(filepath.Join(r.dir, id+suffix))
	}
	if unix.Rmdir(r.dir) == nil {
		unix.Rmdir(filepath.Dir(r.dir))
	}
}

// List returns every record, oldest first. Running records whose
// supervisor has died are settled on the way: removed, or kept as exited
// for a detached sandbox that was not --rm.
func (r *Registry) List() ([]Record, error) {
	unlock, err := r.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []Record
	for _, rec := range r.load() {
		if rec.State == Running && !Alive(rec.Pid, rec.PidStart) {
			if !rec.Detached || rec.AutoRemove {
				r.removeFiles(rec.ID)
				continue
			}
			rec.State, rec.ExitCode, rec.Finished = Exited, 137, time.Now()
			r.write(rec)
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Get finds a record by name, full id or unique id prefix, as Docker does.
func (r *Registry) Get(ref string) (Record, error) {
	all, err := r.List()
	if err != nil {
		return Record{}, err
	}
	var byPrefix []Record
	for _, rec := range all {
		if rec.ID == ref || rec.Name == ref {
			return rec, nil
		}
		if ref != "" && strings.HasPrefix(rec.ID, ref) {
			byPrefix = append(byPrefix, rec)
		}
	}
	if len(byPrefix) == 1 {
		return byPrefix[0], nil
	}
	if len(byPrefix) > 1 {
		return Record{}, fmt.Errorf("%q matches %d sandboxes: use more of the id", ref, len(byPrefix))
	}
	return Record{}, fmt.Errorf("%w: %s (see netns-run ps -a)", ErrNotFound, ref)
}

func (r *Registry) load() []Record {
	paths, _ := filepath.Glob(filepath.Join(r.dir, "*.json"))
	var out []Record
	for _, p := range paths {
		if rec, err := r.read(p); err == nil {
			out = append(out, rec)
		}
	}
	return out
}

func (r *Registry) read(path string) (Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Record{}, ErrNotFound
		}
		return Record{}, fmt.Errorf("read sandbox record: %w", err)
	}
	rec, err := decode(b)
	if err != nil {
		return Record{}, fmt.Errorf("read sandbox record %s: %w", filepath.Base(path), err)
	}
	return rec, nil
}

// decode reads a record of any version this netns-run knows.
func decode(b []byte) (Record, error) {
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return Record{}, err
	}
	switch head.Version {
	case recordVersion:
		var rec Record
		err := json.Unmarshal(b, &rec)
		return rec, err
	case 0:
		var old recordV0
		if err := json.Unmarshal(b, &old); err != nil {
			return Record{}, err
		}
		return old.upgrade(), nil
	default:
		return Record{}, fmt.Errorf("format version %d is newer than this netns-run reads (%d)", head.Version, recordVersion)
	}
}

// recordV0 is a record written before records had a version. Its fields are
// today's but for the published ports, which had Go's field names (HostIP,
// HostPort, ...) because forward.Mapping had no tags. The tags changed to
// the snake_case of the rest of the record rather than copying Go's names,
// so old records are read here: a sandbox started by the previous netns-run
// may still be running when this one reads its record. The outer Ports hides
// Record.Ports when decoding.
type recordV0 struct {
	Record
	Ports []mappingV0 `json:"ports,omitempty"`
}

type mappingV0 struct {
	HostIP                               netip.Addr
	HostPort, HostPortEnd, ContainerPort uint16
	Proto                                forward.Proto
}

func (old recordV0) upgrade() Record {
	rec := old.Record
	rec.Version = recordVersion
	rec.Ports = nil
	for _, m := range old.Ports {
		rec.Ports = append(rec.Ports, forward.Mapping(m))
	}
	return rec
}

func (r *Registry) write(rec Record) error {
	rec.Version = recordVersion
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sandbox record: %w", err)
	}
	tmp := r.path(rec.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write sandbox record: %w", err)
	}
	if err := os.Rename(tmp, r.path(rec.ID)); err != nil {
		return fmt.Errorf("write sandbox record: %w", err)
	}
	return nil
}

// StartTime is a process's start time in clock ticks since boot, which
// with the pid identifies it.
func StartTime(pid int) (uint64, bool) {
	_, start, ok := procStat(pid)
	return start, ok
}

func procStat(pid int) (state string, start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	// The command name may hold spaces and parentheses: count after the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 20 {
		return "", 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return f[0], v, err == nil
}

// Alive reports whether the process pid that started at start still runs
// (a zombie does not).
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	state, got, ok := procStat(pid)
	return ok && got == start && state != "Z"
}
