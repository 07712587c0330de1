package netstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A store file cut short (a crash of the machine before the data reached
// the disk, a full disk under another writer) falls back on the version
// before the last write: the store stays readable, the broken file is
// kept aside.
func TestTruncatedFileRecovers(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	a := create(t, s, CreateRequest{Name: "a"})
	if _, err := s.AllocateLease(a.ID, strings.Repeat("1", 64), addr("")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AllocateLease(a.ID, strings.Repeat("2", 64), addr("")); err != nil {
		t.Fatal(err)
	}
	create(t, s, CreateRequest{Name: "net-b"}) // the last write of networks.json (a name no id prefix matches)

	for _, name := range []string{networksFileName, leasesFileName} {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, dir)
	if _, err := s.Get("a"); err != nil {
		t.Errorf("network a after networks.json was cut short: %v", err)
	}
	if _, err := s.Get("net-b"); err == nil {
		t.Error("network net-b is back: the previous version of networks.json did not have it")
	}
	leases, err := s.Leases(a.ID)
	if err != nil || len(leases) != 1 {
		t.Errorf("leases of a from the previous leases.json: %v, %v; want the first one", leases, err)
	}
	for _, name := range []string{networksFileName, leasesFileName} {
		if _, err := os.Stat(filepath.Join(dir, name+".corrupt")); err != nil {
			t.Errorf("the broken %s was not kept aside: %v", name, err)
		}
	}
	// The recovered store is whole again: a fresh open reads it as is.
	if _, err := Open(dir); err != nil {
		t.Errorf("open after the recovery: %v", err)
	}
}

// Without a previous version a broken file stays an error that names it.
func TestTruncatedFileWithoutBackup(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	path := filepath.Join(dir, networksFileName)
	os.Remove(path + ".bak")
	if err := os.WriteFile(path, []byte(`{"version":1,"netw`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "fix or remove the file") {
		t.Errorf("Open = %v; want an error naming %s", err, path)
	}
}

func TestWriteErrorSaysWhatToDo(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&fs.PathError{Op: "open", Path: "/d/x", Err: syscall.ENOSPC}, "free some space"},
		{&fs.PathError{Op: "open", Path: "/d/x", Err: syscall.EROFS}, "make the directory writable"},
		{&fs.PathError{Op: "open", Path: "/d/x", Err: syscall.EACCES}, "make the directory writable"},
		{errors.New("other"), "writing the network store in /d: other"},
	} {
		if got := writeError("/d", c.err).Error(); !strings.Contains(got, c.want) {
			t.Errorf("writeError(%v) = %q; want %q in it", c.err, got, c.want)
		}
	}
}

// A crash between writeJSON's two renames leaves only PATH.bak: the store
// reads it as the current version.
func TestCrashBetweenRenames(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	create(t, s, CreateRequest{Name: "a"})
	path := filepath.Join(dir, networksFileName)
	if err := os.Rename(path, path+".bak"); err != nil {
		t.Fatal(err)
	}
	if _, err := open(t, dir).Get("a"); err != nil {
		t.Errorf("network a with only networks.json.bak left: %v", err)
	}
}
