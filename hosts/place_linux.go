package hosts

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// scratchDir is where Place mounts the tmpfs that holds the files until they
// are bound over their targets. It is unmounted again before Place returns,
// so the sandbox sees its usual /tmp.
const scratchDir = "/tmp"

// SkipError reports a target that Place left as it was. Place returns these
// (joined) only when everything else was placed, so a caller can log them
// and go on.
type SkipError struct {
	Target string
	Reason string
}

func (e *SkipError) Error() string {
	return fmt.Sprintf("not placing %s: %s", e.Target, e.Reason)
}

// Place makes each target path (a key of files, absolute) read as its
// content, by bind-mounting a tmpfs file over it. It must run in a mount
// namespace of the sandbox's own, with CAP_SYS_ADMIN there (root of its own
// user namespace), and with /proc mounted: nothing is ever written to the
// host's files or disk.
//
// A target that does not exist, or is not a file, is skipped: the error
// returned is then a join of *SkipError values only, one per skipped target.
// A symlink target, dangling or not, is covered itself (its destination is
// neither followed nor created), so /etc/resolv.conf pointing at a missing
// stub-resolv.conf still works. Any other error is returned alone, and the
// placement must be considered failed.
func Place(files map[string][]byte) error {
	targets := slices.Sorted(maps.Keys(files))
	for _, t := range targets {
		if !filepath.IsAbs(t) {
			return fmt.Errorf("place %q: target path is not absolute", t)
		}
	}
	// A mount namespace starts with the propagation of the one it was copied
	// from; with shared mounts our bind mounts would show up on the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / a private mount: %w", err)
	}

	// Open every target before the scratch tmpfs is mounted, so a target
	// under the scratch directory is not hidden by it.
	var (
		skipped []error
		opened  []openTarget
	)
	defer func() {
		for _, o := range opened {
			unix.Close(o.fd)
		}
	}()
	for _, path := range targets {
		fd, err := openNoFollow(path)
		if err != nil {
			var skip *SkipError
			if errors.As(err, &skip) {
				skipped = append(skipped, err)
				continue
			}
			return err
		}
		opened = append(opened, openTarget{path: path, fd: fd, content: files[path]})
	}
	if len(opened) > 0 {
		if err := bindFromScratch(opened); err != nil {
			return err
		}
	}
	return errors.Join(skipped...)
}

// openTarget is a target path held open, with the content to place over it.
type openTarget struct {
	path    string
	fd      int
	content []byte
}

// openNoFollow returns an O_PATH descriptor of target itself (not of a symlink's
// destination), or a *SkipError if there is nothing to cover.
func openNoFollow(target string) (int, error) {
	fd, err := unix.Open(target, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return -1, &SkipError{Target: target, Reason: "it does not exist, and creating it would change the host's files"}
	}
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", target, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat %s: %w", target, err)
	}
	if mode := st.Mode & unix.S_IFMT; mode != unix.S_IFREG && mode != unix.S_IFLNK {
		unix.Close(fd)
		return -1, &SkipError{Target: target, Reason: "it is not a regular file or a symlink"}
	}
	return fd, nil
}

// bindFromScratch writes each file into a fresh tmpfs and binds it over the
// target, then detaches the tmpfs: the bind mounts keep it alive for as long
// as they exist.
func bindFromScratch(targets []openTarget) (err error) {
	// One page more than each file needs, so the size is never 0 (unlimited).
	size := 0
	for _, t := range targets {
		size += len(t.content) + os.Getpagesize()
	}
	opts := "mode=0700,size=" + strconv.Itoa(size)
	if err := unix.Mount("tmpfs", scratchDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount scratch tmpfs on %s: %w", scratchDir, err)
	}
	defer func() {
		if uerr := unix.Unmount(scratchDir, unix.MNT_DETACH); uerr != nil {
			err = errors.Join(err, fmt.Errorf("unmount scratch tmpfs from %s: %w", scratchDir, uerr))
		}
	}()

	for i, t := range targets {
		src := filepath.Join(scratchDir, strconv.Itoa(i))
		if err := os.WriteFile(src, t.content, 0o644); err != nil {
			return fmt.Errorf("write %s for %s: %w", src, t.path, err)
		}
		// The umask may have narrowed the mode; daemons that drop root must
		// still read /etc/hosts.
		if err := os.Chmod(src, 0o644); err != nil {
			return fmt.Errorf("chmod %s for %s: %w", src, t.path, err)
		}
		// Mounting on the /proc magic link of an O_PATH descriptor places the
		// file on the path itself, even when that path is a symlink.
		fdPath := "/proc/self/fd/" + strconv.Itoa(t.fd)
		if err := unix.Mount(src, fdPath, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount over %s: %w", t.path, err)
		}
	}
	return nil
}
