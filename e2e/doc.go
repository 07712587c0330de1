// Package e2e is the end-to-end suite of the built netns-run binary: its
// tests (the _test.go files) run the real binary, unprivileged, in
// throwaway namespaces that the launcher (e2e/outerns, through `make e2e`)
// makes; see e2e/README.md.
package e2e
