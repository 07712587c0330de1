// Package e2e is the end-to-end suite of the built netns-run binary: its
// tests (the _test.go files) run the real binary, unprivileged, in
// throwaway namespaces that the launcher (e2e/outerns, through `make e2e`)
// makes: a "host" network namespace with loopback and a veth to a "world"
// namespace (198.51.100.1 <-> 198.51.100.2), as a non-root uid with no
// capabilities. Run directly, without NETNS_RUN_E2E=1, every test skips
// (requireLauncher), so `go test ./...` shows them as SKIP. See
// e2e/README.md.
package e2e
