//go:build linux && manpages

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestManPages: gen-man writes a page per command, from their help, as
// make install runs it (make unit runs this with -tags manpages).
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	root := newRootCommand()
	root.SetArgs([]string{"gen-man", dir})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for page, want := range map[string]string{
		"netns-run.1":                "netns-run",
		"netns-run-run.1":            "--publish",
		"netns-run-network-create.1": "--ipv6",
		"netns-run-attach.1":         "ctrl-p ctrl-q",
		"netns-run-exec.1":           "--user",
	} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil || !strings.Contains(string(b), `.TH "NETNS-RUN" "1"`) || !strings.Contains(string(b), want) {
			t.Errorf("man page %s: %v; want a section 1 page naming %q:\n%.300s", page, err, want, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "netns-run-gen-man.1")); err == nil {
		t.Error("the hidden gen-man command got a page")
	}
}
