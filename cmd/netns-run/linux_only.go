//go:build !linux

// netns-run is Linux-only (see the package doc in main.go): every other
// file of this command builds only for Linux, and this import, which cannot
// resolve, turns a build for another system into this one message.
package main

import _ "netns-run builds only for Linux"
