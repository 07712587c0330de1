package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/netns-run/netns-run"

// engineRooms are the patterns of the packages that must not import
// internal/: the data path, usable without the control plane.
var engineRooms = []string{"./stack/...", "./tap/...", "./forward/...", "./hosts/..."}

type pkg struct {
	ImportPath string
	Deps       []string
}

func TestEngineRoomsDoNotImportInternal(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	args := append([]string{"list", "-json=ImportPath,Deps"}, engineRooms...)
	cmd := exec.Command(goBin, args...)
	cmd.Dir = "../.." // the module root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	n := 0
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("reading go list output: %v", err)
		}
		n++
		if !strings.HasPrefix(p.ImportPath, module+"/") {
			t.Errorf("go list named %s, outside the module", p.ImportPath)
		}
		for _, d := range p.Deps {
			if d == module+"/internal" || strings.HasPrefix(d, module+"/internal/") {
				t.Errorf("%s imports %s: engine rooms must not depend on internal/", p.ImportPath, d)
			}
		}
	}
	if n < len(engineRooms) {
		t.Fatalf("go list found %d engine packages, want at least %d", n, len(engineRooms))
	}
}

// heavyInit are packages whose init costs every process of the binary
// memory or start-up time it does not need (gopacket/layers fills ~7 MB
// of lookup tables; docs/ARCHITECTURE.md, Measured facts: Package
// initialisation): the binary must not link them; tests may.
var heavyInit = []string{
	"github.com/google/gopacket/layers",
	"github.com/russross/blackfriday/v2", // cobra/doc's, for the man pages: -tags manpages only
}

func TestBinaryLinksNoHeavyInit(t *testing.T) {
	deps := depsOf(t, "./cmd/netns-run")
	if len(deps) < 50 {
		t.Fatalf("go list -deps found %d packages; want the binary's whole graph", len(deps))
	}
	for _, d := range deps {
		for _, h := range heavyInit {
			if d == h {
				t.Errorf("the binary links %s, whose init every netns-run process pays for", h)
			}
		}
	}
}

// agentOnly: what the agent's own binary must not link, or it is
// netns-run again (docs/ARCHITECTURE.md, Measured facts: The agent's own
// binary).
var agentOnly = []string{"gvisor.dev/gvisor/", "github.com/prometheus/", "github.com/miekg/dns", "github.com/spf13/cobra", "github.com/insomniacslk/dhcp"}

func TestAgentBinaryStaysLean(t *testing.T) {
	deps := depsOf(t, "./cmd/netns-run-agent")
	if !slices.Contains(deps, "github.com/netns-run/netns-run/internal/agent") {
		t.Fatalf("go list -deps ./cmd/netns-run-agent does not list internal/agent: %q", deps)
	}
	for _, d := range deps {
		for _, p := range agentOnly {
			if strings.HasPrefix(d, p) {
				t.Errorf("the agent's binary links %s", d)
			}
		}
	}
}

// depsOf is every package the program pkg links (go list -deps).
func depsOf(t *testing.T, pkg string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", pkg)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.Bytes())
	}
	return strings.Fields(string(out))
}
