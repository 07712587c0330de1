//go:build linux && (amd64 || arm64)

package seccomp

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	"gvisor.dev/gvisor/pkg/bpf"
	gseccomp "gvisor.dev/gvisor/pkg/seccomp"
)

var update = flag.Bool("update", false, "rewrite programs_linux_GOARCH.go from the lists")

// precompiledAlso is how many pids each role's program may signal besides
// its own: the supervisor's agent.
var precompiledAlso = map[Role]int{Slirp: 0, Daemon: 0, Supervisor: 1}

// TestPrograms: programs_linux_GOARCH.go is what the lists compile to now
// (for a build without cgo), and a program with pids put in is the one
// compiled for those pids. With -update it rewrites the file.
func TestPrograms(t *testing.T) {
	progs := map[Role]program{}
	for _, r := range roles {
		p, err := derive(r, precompiledAlso[r])
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		progs[r] = p
	}
	src := render(progs)
	path := "programs_linux_" + runtime.GOARCH + ".go"
	if *update {
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	have, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Skipf("no %s: processes compile their filters at run time here (go generate ./internal/seccomp makes it)", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, src) {
		t.Fatalf("%s is not what the lists compile to: run go generate ./internal/seccomp", path)
	}
	// The file's programs, with pids put in, are the compiled ones.
	for _, r := range roles {
		for _, pids := range [][2]int{{1, 2}, {2, 1}, {4194304, 300}, {77, 4194303}, {12345, 12346}} {
			var also []int
			if precompiledAlso[r] == 1 {
				also = []int{pids[1]}
			}
			want, err := buildFor(r, pids[0], also, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := programs[r].instrs(pids[0], also); !slices.Equal(got, want) {
				t.Errorf("%s for pid %d, also %v: the precompiled program differs from the compiled one", r, pids[0], also)
			}
		}
	}
	// Where the kernel gives no listener, EPERM in place of each
	// notification answers every call as the program compiled with EPERM
	// as its default does (the optimizer shares that one's returns with
	// refusals' EPERM, so the two differ in their instructions).
	for _, r := range roles {
		for _, cgo := range []bool{false, true} {
			if err := checkWithoutListener(r, cgo); err != nil {
				t.Errorf("%s (cgo %v): %v", r, cgo, err)
			}
		}
	}
	if !cgoBuild {
		if _, ok := precompiled(Supervisor, 1, []int{2}); !ok {
			t.Errorf("a build without cgo does not take the precompiled program")
		}
	}
	if _, ok := precompiled(Supervisor, 1, nil); ok {
		t.Errorf("the supervisor's program was taken for another number of pids")
	}
}

// derive compiles r's program twice, with two sets of placeholder pids in
// opposite order, and finds where the pids went: the programs must differ
// there only, in the K of a jump-if-equal, so that putting any pid there
// gives the program compiled for it.
func derive(r Role, nAlso int) (program, error) {
	mk := func(self, alsoBase int) ([]bpf.Instruction, []int, error) {
		var also []int
		for i := range nAlso {
			also = append(also, alsoBase+i)
		}
		instrs, err := buildFor(r, self, also, false)
		return instrs, also, err
	}
	a, alsoA, err := mk(placeholderSelf, placeholderAlso)
	if err != nil {
		return program{}, err
	}
	b, alsoB, err := mk(placeholderAlso+0x1000, placeholderSelf-0x1000) // the other order
	if err != nil {
		return program{}, err
	}
	if len(a) != len(b) {
		return program{}, fmt.Errorf("the program depends on the pids: %d instructions, then %d", len(a), len(b))
	}
	p := program{also: make([][]int, nAlso)}
	for i := range a {
		ia, ib := a[i], b[i]
		p.code = append(p.code, uint64(ia.OpCode)<<48|uint64(ia.JumpIfTrue)<<40|uint64(ia.JumpIfFalse)<<32|uint64(ia.K))
		slot := -2 // not a pid
		switch ia.K {
		case placeholderSelf:
			slot = -1
		default:
			for j, v := range alsoA {
				if ia.K == uint32(v) {
					slot = j
				}
			}
		}
		if slot == -2 {
			if ia != ib {
				return program{}, fmt.Errorf("instruction %d depends on the pids: %v, then %v", i, ia, ib)
			}
			continue
		}
		wantB := uint32(placeholderAlso + 0x1000)
		if slot >= 0 {
			wantB = uint32(alsoB[slot])
		}
		if ia.OpCode != bpf.Jmp|bpf.Jeq|bpf.K || ib.OpCode != ia.OpCode || ib.K != wantB || ia.JumpIfTrue != ib.JumpIfTrue || ia.JumpIfFalse != ib.JumpIfFalse {
			return program{}, fmt.Errorf("instruction %d, where a pid goes, is %v, then %v: not the same equality test", i, ia, ib)
		}
		if slot == -1 {
			p.self = append(p.self, i)
		} else {
			p.also[slot] = append(p.also[slot], i)
		}
	}
	if len(p.self) == 0 {
		return program{}, fmt.Errorf("no instruction compares with the process's pid")
	}
	for j, is := range p.also {
		if len(is) == 0 {
			return program{}, fmt.Errorf("no instruction compares with also[%d]", j)
		}
	}
	return p, nil
}

// render is programs_linux_GOARCH.go.
func render(progs map[Role]program) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by go test -run TestPrograms -update (go generate); DO NOT EDIT.\n\n")
	fmt.Fprintf(&b, "//go:build linux\n\npackage seccomp\n\n")
	fmt.Fprintf(&b, "// The roles' programs for linux/%s without cgo, compiled when netns-run\n// was built (programs_linux.go).\n", runtime.GOARCH)
	fmt.Fprintf(&b, "func init() {\n\tprograms = map[Role]program{\n")
	for _, r := range roles {
		p := progs[r]
		fmt.Fprintf(&b, "\t\t%s: {\n", roleName(r))
		fmt.Fprintf(&b, "\t\t\tself: %#v,\n", p.self)
		if len(p.also) > 0 {
			fmt.Fprintf(&b, "\t\t\talso: %#v,\n", p.also)
		}
		fmt.Fprintf(&b, "\t\t\tcode: []uint64{")
		for i, c := range p.code {
			if i%4 == 0 {
				fmt.Fprintf(&b, "\n\t\t\t\t")
			} else {
				fmt.Fprintf(&b, " ")
			}
			fmt.Fprintf(&b, "0x%016x,", c)
		}
		fmt.Fprintf(&b, "\n\t\t\t},\n\t\t},\n")
	}
	fmt.Fprintf(&b, "\t}\n}\n")
	return b.Bytes()
}

func roleName(r Role) string {
	switch r {
	case Slirp:
		return "Slirp"
	case Daemon:
		return "Daemon"
	case Supervisor:
		return "Supervisor"
	}
	panic(r)
}

// checkWithoutListener runs r's program with EPERM in place of its
// notifications and the program compiled with EPERM as its default on
// every call number, and on the arguments the rules find interesting,
// and wants the same action from both, and notifications in the first.
func checkWithoutListener(r Role, cgo bool) error {
	notifying, err := buildFor(r, 1, []int{2}, cgo)
	if err != nil {
		return err
	}
	p := filterProgram(r, 1, []int{2}, cgo)
	p.Options.DefaultAction = gseccomp.ReturnError.Code(uint16(unix.EPERM))
	want, _, err := p.Build()
	if err != nil {
		return err
	}
	progs := [3]bpf.Program{}
	for i, instrs := range [][]bpf.Instruction{notifying, withoutListener(notifying), want} {
		if progs[i], err = bpf.Compile(instrs, false); err != nil {
			return err
		}
	}
	var cases []linux.SeccompData
	for _, rs := range p.RuleSets {
		cases = append(cases, rs.Rules.UsefulTestCases()...)
	}
	for nr := range int32(600) {
		cases = append(cases, linux.SeccompData{Nr: nr, Arch: gseccomp.LINUX_AUDIT_ARCH})
	}
	buf := make([]byte, (&linux.SeccompData{}).SizeBytes())
	notified := 0
	for _, c := range cases {
		var got [3]uint32
		for i, prog := range progs {
			if got[i], err = bpf.Exec[bpf.NativeEndian](prog, gseccomp.DataAsBPFInput(&c, buf)); err != nil {
				return err
			}
		}
		if got[0] == notify {
			notified++
		}
		if got[1] != got[2] {
			return fmt.Errorf("call %d %v: %#x without a listener, %#x compiled with EPERM", c.Nr, c.Args, got[1], got[2])
		}
	}
	if notified == 0 {
		return errors.New("no call notifies")
	}
	return nil
}
