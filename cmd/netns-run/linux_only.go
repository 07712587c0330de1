//go:build !linux

// netns-run is Linux-only (see the package doc in main.go): every other
// file of this command builds only for Linux, and this one turns a build
// for another system into this one message.
package main

var _ = netns_run_builds_only_for_linux
