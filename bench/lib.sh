# shellcheck shell=bash
# bench/lib.sh: what bench/memory.sh and bench/flood.sh share, sourced
# once they run inside namespaces of their own.

# throwaway_dirs NAME USER brings the namespace's loopback up and sets
# WORK, a directory removed at exit, holding run/ and home/ for USER: the
# XDG_RUNTIME_DIR and HOME that keep netns-run's state apart from the
# user's own sandboxes and daemon.
throwaway_dirs() {
	ip link set lo up
	WORK=$(mktemp -d "/tmp/$1-xdg.XXXXXX")
	# shellcheck disable=SC2064 # WORK is fixed from here on
	trap "rm -rf '$WORK'" EXIT
	mkdir -m 0700 "$WORK/run" "$WORK/home"
	chown -R "$2:" "$WORK"
	chmod 0755 "$WORK"
}
