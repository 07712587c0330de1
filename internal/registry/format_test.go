package registry

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/netns-run/netns-run/forward"
)

// v0Web is testdata/v0's running record, as it was written before records
// had a version.
func v0Web() Record {
	a := netip.MustParseAddr
	return Record{
		Version: recordVersion,
		ID:      "3f1c0d2e4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0", Name: "web", Hostname: "3f1c0d2e4b5a",
		Network: "mynet", NetworkID: "86d10b93e33e35635aeb6c80485767f0c8147388dd0e8562a7ef1eb17a3da6f4",
		IP: a("10.89.0.128"), Prefix: 24, Gateway: a("10.89.0.1"), MAC: "02:42:0a:59:00:80", Aliases: []string{"www"},
		Ports: []forward.Mapping{
			{HostPort: 8080, ContainerPort: 80, Proto: forward.TCP},
			{HostIP: a("127.0.0.1"), HostPort: 5353, ContainerPort: 53, Proto: forward.UDP},
			{HostIP: a("::1"), HostPort: 9000, HostPortEnd: 9010, ContainerPort: 90, Proto: forward.TCP},
		},
		Command: []string{"sleep", "infinity"}, Created: time.Date(2026, 12, 2, 21, 0, 0, 123456789, time.UTC),
		Pid: 4242, PidStart: 987654, AgentPid: 4250, State: Running, Detached: true,
		LogPath: "/run/user/1000/netns-run/sandboxes/3f1c.log", ExecSocket: "/run/user/1000/netns-run/sandboxes/3f1c.sock",
		ControlSocket: "/run/user/1000/netns-run/sandboxes/3f1c.ctl",
		Extra: []Endpoint{{Network: "other", NetworkID: "8d4452df96d3ffc948a5faca889b11d1f177f9dc902517bb1698599fada983b7",
			Interface: "eth1", IP: a("192.168.57.2"), Prefix: 24, Gateway: a("192.168.57.1"), MAC: "02:42:c0:a8:39:02", Aliases: []string{"db"}}},
	}
}

func TestReadVersion0Records(t *testing.T) {
	src := &Registry{dir: filepath.Join("testdata", "v0")}
	web := v0Web()
	got, err := src.read(src.path(web.ID))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, web) {
		t.Errorf("v0 record read as\n%+v\nwant\n%+v", got, web)
	}
	done, err := src.read(src.path("9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"))
	if err != nil {
		t.Fatal(err)
	}
	if done.Name != "done" || done.State != Exited || done.ExitCode != 3 || done.Ports != nil || done.Finished.IsZero() {
		t.Errorf("v0 exited record read as %+v", done)
	}
}

// An Update of an old record writes it back in the current format, which
// reads back the same.
func TestVersion0RecordRewritten(t *testing.T) {
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	web := v0Web()
	old, err := os.ReadFile(filepath.Join("testdata", "v0", web.ID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(r.Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.path(web.ID), old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Update(web.ID, func(rec *Record) { rec.Hostname = "renamed" }); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(r.path(web.ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"version": 1`, `"host_port": 9000`, `"host_port_end": 9010`, `"container_port": 90`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("rewritten record lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "HostPort") {
		t.Errorf("rewritten record keeps the old port names:\n%s", b)
	}
	got, err := r.read(r.path(web.ID))
	if err != nil {
		t.Fatal(err)
	}
	web.Hostname = "renamed"
	if !reflect.DeepEqual(got, web) {
		t.Errorf("rewritten record read as\n%+v\nwant\n%+v", got, web)
	}
}

func TestFutureRecordRefused(t *testing.T) {
	_, err := decode([]byte(`{"version": 2, "id": "x"}`))
	if err == nil || !strings.Contains(err.Error(), "format version 2") {
		t.Fatalf("decode of version 2 = %v, want a format version error", err)
	}
}
