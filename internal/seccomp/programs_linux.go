//go:build linux && (amd64 || arm64)

package seccomp

import "gvisor.dev/gvisor/pkg/bpf"

//go:generate go test -run ^TestPrograms$ -update

// The lists are compiled when netns-run is built, not each time a process
// starts: gVisor's compiler (rules, then BPF optimizations) takes about
// 8 ms of CPU and leaves a few MB of garbage, which a supervisor would pay
// beside its command's start (+5 ms to the first connect, +2.8 MB RSS,
// measured). programs_linux_GOARCH.go holds each role's program for a
// build without cgo (make build's), compiled with placeholder pids; a
// process puts its own in (precompiled) and installs it at once.
// TestPrograms checks that the file matches what the lists compile to
// today (go generate ./internal/seccomp rewrites it) and that a program
// with pids put in is the one compiled for those pids. A cgo build, an
// architecture without the file, or a call with another number of pids
// to signal compiles at run time instead.

// program is a role's filter compiled ahead of time.
type program struct {
	// code is the program, one instruction a word: OpCode<<48 |
	// JumpIfTrue<<40 | JumpIfFalse<<32 | K, with placeholderSelf and
	// placeholderAlso+i where the pids go.
	code []uint64
	self []int   // the instructions whose K is this process's pid
	also [][]int // the instructions whose K is also[i]
}

// The placeholder pids: above any pid (pid_max is at most 2^22), and
// compared by equality only (TestPrograms checks).
const (
	placeholderSelf = 0x3ffe0000
	placeholderAlso = 0x3ffe0100
)

// programs is set by programs_linux_GOARCH.go, where there is one.
var programs map[Role]program

// precompiled is r's program for the process pid that may also signal
// also, when one was compiled ahead of time for this kind of build.
func precompiled(r Role, pid int, also []int) ([]bpf.Instruction, bool) {
	p, ok := programs[r]
	if cgoBuild || !ok || len(p.also) != len(also) {
		return nil, false
	}
	return p.instrs(pid, also), true
}

// instrs is p with the pids put in.
func (p program) instrs(pid int, also []int) []bpf.Instruction {
	instrs := make([]bpf.Instruction, len(p.code))
	for i, c := range p.code {
		instrs[i] = bpf.Instruction{OpCode: uint16(c >> 48), JumpIfTrue: uint8(c >> 40), JumpIfFalse: uint8(c >> 32), K: uint32(c)}
	}
	for _, i := range p.self {
		instrs[i].K = uint32(pid)
	}
	for j, is := range p.also {
		for _, i := range is {
			instrs[i].K = uint32(also[j])
		}
	}
	return instrs
}
