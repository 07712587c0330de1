package registry

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func self(t *testing.T) (int, uint64) {
	t.Helper()
	start, ok := StartTime(os.Getpid())
	if !ok {
		t.Fatal("cannot read own start time")
	}
	return os.Getpid(), start
}

func TestCreateGetRemove(t *testing.T) {
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pid, start := self(t)
	rec := Record{ID: "7881267cb8e1aaaa", Name: "web", State: Running, Pid: pid, PidStart: start, Created: time.Now()}
	if err := r.Create(rec); err != nil {
		t.Fatal(err)
	}
	dup := rec
	dup.ID = "9e8f15588f0fbbbb"
	if err := r.Create(dup); err == nil || !strings.Contains(err.Error(), `"web" is already in use`) {
		t.Fatalf("duplicate name: %v", err)
	}
	for _, ref := range []string{"web", "7881267cb8e1aaaa", "7881"} {
		if got, err := r.Get(ref); err != nil || got.ID != rec.ID {
			t.Errorf("Get(%q) = %v, %v", ref, got.ID, err)
		}
	}
	if _, err := r.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope) = %v", err)
	}
	if err := r.Update(rec.ID, func(x *Record) { x.Hostname = "h" }); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get("web"); got.Hostname != "h" {
		t.Errorf("Update lost: %+v", got)
	}
	r.Remove(rec.ID)
	if _, err := r.Get("web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Remove: %v", err)
	}
}

func TestStaleRecordsSettle(t *testing.T) {
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pid, start := self(t)
	dead := Record{ID: "aaaa", Name: "gone", State: Running, Pid: pid, PidStart: start + 1}
	detached := Record{ID: "bbbb", Name: "kept", State: Running, Pid: pid, PidStart: start + 1, Detached: true}
	live := Record{ID: "cccc", Name: "live", State: Running, Pid: pid, PidStart: start}
	for _, rec := range []Record{dead, detached, live} {
		if err := r.Create(rec); err != nil {
			t.Fatal(err)
		}
	}
	all, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, rec := range all {
		got[rec.Name] = rec.State
	}
	if _, ok := got["gone"]; ok || got["kept"] != Exited || got["live"] != Running || len(got) != 2 {
		t.Fatalf("after settling: %v", got)
	}
}
