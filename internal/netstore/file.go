package netstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"time"
)

// File names inside the store's directory.
const (
	networksFileName = "networks.json"
	leasesFileName   = "leases.json"
	lockFileName     = "lock"
)

// formatVersion is the version of both files' layout.
const formatVersion = 1

// networksFile is networks.json. The on-disk layout is its own type so the
// Network struct can change without changing the file.
type networksFile struct {
	Version  int           `json:"version"`
	Networks []diskNetwork `json:"networks"`
}

type diskNetwork struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Driver   string            `json:"driver"`
	Subnet   netip.Prefix      `json:"subnet"`
	Gateway  netip.Addr        `json:"gateway"`
	IPRange  netip.Prefix      `json:"ip_range,omitzero"`
	Internal bool              `json:"internal,omitempty"`
	Options  map[string]string `json:"options,omitempty"`
	Created  time.Time         `json:"created"`
	// The IPv6 side, added to format 1 without changing its version:
	// files without it read as IPv4-only networks.
	EnableIPv6 bool         `json:"enable_ipv6,omitempty"`
	Subnet6    netip.Prefix `json:"subnet6,omitzero"`
	Gateway6   netip.Addr   `json:"gateway6,omitzero"`
}

// leasesFile is leases.json: network id -> sandbox id -> address, the
// IPv6 addresses of dual-stack networks apart (added to format 1 as
// Network's IPv6 side).
type leasesFile struct {
	Version int                              `json:"version"`
	Leases  map[string]map[string]netip.Addr `json:"leases"`
	Leases6 map[string]map[string]netip.Addr `json:"leases6,omitempty"`
}

// update runs fn on the store's content under the store's locks and writes
// back whatever fn marked dirty. When fn fails nothing is written.
func (s *Store) update(fn func(*state) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := lockFile(filepath.Join(s.dir, lockFileName))
	if err != nil {
		return fmt.Errorf("locking the network store: %w", err)
	}
	defer unlock()

	st, err := s.load()
	if err != nil {
		return err
	}
	if err := st.ensureBridge(); err != nil {
		return err
	}
	if st.networksDirty { // the bridge was missing: it stays, whatever fn does
		if err := s.save(st); err != nil {
			return err
		}
		st.networksDirty, st.leasesDirty = false, false
	}
	if err := fn(st); err != nil {
		return err
	}
	return s.save(st)
}

func (s *Store) load() (*state, error) {
	st := &state{leases: map[string]map[string]netip.Addr{}, leases6: map[string]map[string]netip.Addr{}}

	var nf networksFile
	found, err := readOrRecover(filepath.Join(s.dir, networksFileName), &nf)
	if err != nil {
		return nil, err
	}
	if found {
		seenID, seenName := map[string]bool{}, map[string]bool{}
		for _, d := range nf.Networks {
			n := Network(d)
			if err := n.check(); err != nil {
				return nil, s.corrupt(networksFileName, fmt.Errorf("network %q: %w", d.Name, err))
			}
			if seenID[n.ID] || seenName[n.Name] {
				return nil, s.corrupt(networksFileName, fmt.Errorf("network %q (%s) appears twice", n.Name, n.ShortID()))
			}
			seenID[n.ID], seenName[n.Name] = true, true
			st.networks = append(st.networks, n)
		}
	}

	var lf leasesFile
	found, err = readOrRecover(filepath.Join(s.dir, leasesFileName), &lf)
	if err != nil {
		return nil, err
	}
	if found {
		for id, m := range lf.Leases {
			if len(m) > 0 {
				st.leases[id] = m
			}
		}
		for id, m := range lf.Leases6 {
			if len(m) > 0 {
				st.leases6[id] = m
			}
		}
	}
	return st, nil
}

// save writes the files whose content changed.
func (s *Store) save(st *state) error {
	if st.networksDirty {
		nf := networksFile{Version: formatVersion, Networks: make([]diskNetwork, 0, len(st.networks))}
		ns := append([]Network(nil), st.networks...)
		sortNetworks(ns)
		for _, n := range ns {
			nf.Networks = append(nf.Networks, diskNetwork(n))
		}
		if err := writeJSON(filepath.Join(s.dir, networksFileName), nf); err != nil {
			return err
		}
	}
	// Leases of networks that no longer exist are dropped whenever either
	// file is written (Remove writes networks.json first, so a crash in
	// between leaves only such orphans behind).
	for _, l := range []map[string]map[string]netip.Addr{st.leases, st.leases6} {
		for id := range l {
			if !st.hasID(id) {
				delete(l, id)
				st.leasesDirty = true
			}
		}
	}
	if st.leasesDirty {
		lf := leasesFile{Version: formatVersion, Leases: st.leases, Leases6: st.leases6}
		if err := writeJSON(filepath.Join(s.dir, leasesFileName), lf); err != nil {
			return err
		}
	}
	return nil
}

func (st *state) hasID(id string) bool {
	for _, n := range st.networks {
		if n.ID == id {
			return true
		}
	}
	return false
}

func (s *Store) corrupt(name string, err error) error {
	return fmt.Errorf("%s: %w: fix or remove the file", filepath.Join(s.dir, name), err)
}

// errUnparsable marks a store file that is not the JSON it should be:
// truncated or overwritten by something else than this store.
var errUnparsable = errors.New("not a readable store file")

// readOrRecover is readJSON, but a file that does not parse is replaced by
// its previous version (writeJSON keeps one beside it, as PATH.bak) when
// that one parses: the broken file is kept as PATH.corrupt, and a warning
// says what happened. What the last write added is lost: a network just
// created, or a lease, which its member takes again when it rejoins (as
// after a daemon restart); until then that address could be handed out
// twice, a risk that only a file broken outside netns-run brings.
func readOrRecover(path string, v any) (found bool, err error) {
	found, err = readJSON(path, v)
	switch {
	case err == nil && found:
		return true, nil
	case err == nil: // missing: new, or a crash between writeJSON's renames
		if ok, berr := readJSON(path+".bak", v); berr != nil || !ok {
			return false, nil
		}
		return true, writeJSON(path, v)
	case !errors.Is(err, errUnparsable):
		return false, err
	}
	// What the broken file's decoding left in v must not mix with the
	// previous version's content.
	reflect.ValueOf(v).Elem().SetZero()
	if ok, berr := readJSON(path+".bak", v); berr != nil || !ok {
		return false, err
	}
	if rerr := os.Rename(path, path+".corrupt"); rerr != nil {
		return false, fmt.Errorf("%w (setting it aside: %v)", err, rerr)
	}
	if werr := writeJSON(path, v); werr != nil {
		return false, werr
	}
	slog.Warn("the network store recovered a file from its previous version", "file", path, "broken", path+".corrupt", "err", err)
	return true, nil
}

// readJSON reads a store file into v; a missing file is found=false.
func readJSON(path string, v any) (found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the network store: %w", err)
	}
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return false, fmt.Errorf("%s: %w (%w): fix or remove the file", path, errUnparsable, err)
	}
	if head.Version != formatVersion {
		return false, fmt.Errorf("%s has format version %d, this netns-run reads version %d: use the netns-run that wrote it", path, head.Version, formatVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, fmt.Errorf("%s: %w (%w): fix or remove the file", path, errUnparsable, err)
		}
		return false, fmt.Errorf("%s: %w: fix or remove the file", path, err)
	}
	return true, nil
}

// writeJSON replaces path atomically: a temporary file in the same
// directory (mode 0600), fsync, rename, fsync of the directory. The version
// it replaces is renamed to PATH.bak first (nothing is copied, and the
// hardened daemon may rename but not link), which readOrRecover falls back
// on, also when a crash comes between the two renames.
func writeJSON(path string, v any) (err error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return writeError(dir, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return writeError(dir, err)
	}
	if _, err := f.Write(data); err != nil {
		return writeError(dir, err)
	}
	if err := f.Sync(); err != nil {
		return writeError(dir, err)
	}
	if err := f.Close(); err != nil {
		return writeError(dir, err)
	}
	if err := os.Rename(path, path+".bak"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return writeError(dir, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return writeError(dir, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// writeError says what to do about a store that cannot be written; the
// files already there are untouched (writes go to a temporary file first).
func writeError(dir string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("writing the network store in %s: %w: free some space (nothing was changed)", dir, err)
	case errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("writing the network store in %s: %w: make the directory writable, or point XDG_DATA_HOME at one that is (nothing was changed)", dir, err)
	}
	return fmt.Errorf("writing the network store in %s: %w", dir, err)
}
