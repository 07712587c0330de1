// Package archtest holds no code, only a test of the repository's import
// rule (docs/ARCHITECTURE.md, "Rooms"): the engine rooms (stack, tap,
// forward, hosts) never import the control plane under internal/.
package archtest
