package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestPsAsDocker: ps in Docker's columns and order (newest first, IMAGE
// the command's program, COMMAND quoted and cut at 20 characters unless
// --no-trunc, CREATED and STATUS in Docker's words), --format with Docker's
// fields, table and json, -q, and the filters.
func TestPsAsDocker(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("run", "-d", "--name", "ps-old", "--network", "bridge", "-p", "18230:80", "--", probe, "serve-tcp", "80")
	u.ok("run", "-d", "--name", "ps-new", "--network", "private", "--", probe, "sleep", "60s")
	t.Cleanup(func() { u.nr("stop", "-t", "1", "ps-old", "ps-new") })

	lines := nonEmptyLines(u.ok("ps").stdout)
	if len(lines) != 3 {
		t.Fatalf("ps: want a header and two rows:\n%s", strings.Join(lines, "\n"))
	}
	if !regexp.MustCompile(`^CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES$`).MatchString(lines[0]) {
		t.Errorf("ps header: %q", lines[0])
	}
	row := regexp.MustCompile(`^[0-9a-f]{12} +probe +"/[^"]{18}…" +(Less than a second|\d+ seconds?) ago +Up (Less than a second|\d+ seconds?) +(\S.*\S +)?ps-(new|old)$`)
	for _, l := range lines[1:] {
		if !row.MatchString(l) {
			t.Errorf("ps row not in Docker's shape: %q", l)
		}
	}
	if !strings.HasSuffix(lines[1], "ps-new") || !strings.Contains(lines[2], "0.0.0.0:18230->80/tcp, [::]:18230->80/tcp") {
		t.Errorf("ps: want the newest first and the ports of ps-old:\n%s", strings.Join(lines, "\n"))
	}
	if r := u.ok("ps", "--no-trunc", "--format", "{{.Command}}|{{.ID}}", "--filter", "name=ps-new"); !regexp.MustCompile(`^"\S+/probe sleep 60s"\|[0-9a-f]{64}\n$`).MatchString(r.stdout) {
		t.Errorf("ps --no-trunc --format: %q", r.stdout)
	}
	if r := u.ok("ps", "--format", "table {{.Names}}\t{{.Networks}}", "--filter", "network=bridge"); !regexp.MustCompile(`^NAMES +NETWORKS\nps-old +bridge\n$`).MatchString(r.stdout) {
		t.Errorf("ps --filter network=bridge --format table: %q", r.stdout)
	}
	if r := u.ok("ps", "-q", "--filter", "publish=80/tcp"); !regexp.MustCompile(`^[0-9a-f]{12}\n$`).MatchString(r.stdout) {
		t.Errorf("ps -q --filter publish=80/tcp: %q", r.stdout)
	}
	var row0 map[string]string
	r := u.ok("ps", "--format", "{{json .}}", "--filter", "name=ps-old")
	if err := json.Unmarshal([]byte(r.stdout), &row0); err != nil || row0["Names"] != "ps-old" || row0["State"] != "running" || row0["Image"] != "probe" {
		t.Errorf("ps --format '{{json .}}': %v %q", err, r.stdout)
	}
	// The examples of docker ps --format's documentation run as there;
	// what a sandbox has none of (size, labels, mounts) is empty or zero.
	for format, want := range map[string]string{
		"{{.ID}}: {{.Command}}":                              `^[0-9a-f]{12}: "\S+…"\n$`, // cut at 20 characters, as Docker
		"table {{.ID}}\t{{.Labels}}":                         `^CONTAINER ID +LABELS\n[0-9a-f]{12} *\n$`,
		"{{.Names}} {{.Size}} {{.Mounts}}|{{.LocalVolumes}}": `^ps-old 0B \|0\n$`,
		`{{.Label "com.docker.compose.project"}}|`:           `^\|\n$`,
	} {
		if r := u.ok("ps", "--format", format, "--filter", "name=ps-old"); !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("ps --format %q: %q; want %s", format, r.stdout, want)
		}
	}
	if r := u.ok("network", "ls", "--format", "{{.Name}}: {{.Driver}} [{{.Labels}}]", "--filter", "name=bridge"); r.stdout != "bridge: bridge []\n" {
		t.Errorf("network ls --format with .Labels: %q", r.stdout)
	}
	wantOwnError(t, u.nr("ps", "--filter", "colour=red"), "an unknown filter", "the keys are name, network, status and publish")
	wantOwnError(t, u.nr("ps", "--format", "{{.Nope}}"), "a bad template field", "invalid --format")
}
