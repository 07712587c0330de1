# netns-run: build and test.
#
#   make build   bin/netns-run and bin/netns-run-agent (each sandbox's pid 1)
#   make unit    go test on every package but the e2e suite
#   make e2e     the end-to-end suite: the built binary, run unprivileged in
#                throwaway namespaces (see e2e/outerns); as root it runs the
#                suite as the user $(E2E_USER), created if missing
#   make fuzz-short  every fuzz target for 2 s (scripts/fuzz-short.sh)
#   make test    unit + fuzz-short + e2e
#   make soak    10,000 sandbox start/stop cycles, then a check that
#                nothing grew (e2e TestSoak; make test runs 200)
#   make install $(DESTDIR)$(PREFIX)/bin/netns-run and netns-run-agent, slirp4netns linked to it,
#                the man pages and the shell completions
#
# E2E_RUN=REGEXP selects e2e tests (go test -run syntax); E2E_ARGS adds
# arguments for the test binary (-kill-seed=N replays TestKillAtRandom).

GO          ?= go
BIN         ?= bin
E2E_USER    ?= netns-test
E2E_TIMEOUT ?= 10m
E2E_RUN     ?=
E2E_ARGS    ?=
PREFIX      ?= /usr/local

.PHONY: build unit e2e e2e-build test demo install soak fuzz-short

# Static (CGO_ENABLED=0): every sandbox starts two netns-run processes,
# the supervisor and the agent, and without the dynamic loader and libc
# each starts ~1 ms sooner (launch to the command's first connect through
# the private network: 15.4 -> 13.3 ms median). Nothing here needs cgo:
# names are never resolved through libc, and os/user reads /etc/passwd.
# netns-run-agent, beside it, is pid 1 of each sandbox (cmd/netns-run-agent).
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/netns-run ./cmd/netns-run
	CGO_ENABLED=0 $(GO) build -o $(BIN)/netns-run-agent ./cmd/netns-run-agent

# install: the binary, and a link named slirp4netns to it, through which
# rootless Podman and RootlessKit run netns-run as their slirp4netns; the
# man pages and the bash, zsh and fish completions (which complete the
# user's sandbox and network names), made by the binary itself (the man
# pages by a build of it with -tags manpages: see cmd/netns-run/manpages.go).
SHARE = $(DESTDIR)$(PREFIX)/share
install: build
	install -d '$(DESTDIR)$(PREFIX)/bin' '$(SHARE)/man/man1' '$(SHARE)/bash-completion/completions' \
		'$(SHARE)/zsh/site-functions' '$(SHARE)/fish/vendor_completions.d'
	install -m 0755 $(BIN)/netns-run '$(DESTDIR)$(PREFIX)/bin/netns-run'
	install -m 0755 $(BIN)/netns-run-agent '$(DESTDIR)$(PREFIX)/bin/netns-run-agent'
	ln -sf netns-run '$(DESTDIR)$(PREFIX)/bin/slirp4netns'
	CGO_ENABLED=0 $(GO) run -tags manpages ./cmd/netns-run gen-man '$(SHARE)/man/man1'
	$(BIN)/netns-run completion bash > '$(SHARE)/bash-completion/completions/netns-run'
	$(BIN)/netns-run completion zsh > '$(SHARE)/zsh/site-functions/_netns-run'
	$(BIN)/netns-run completion fish > '$(SHARE)/fish/vendor_completions.d/netns-run.fish'

unit:
	@pkgs=$$($(GO) list ./... | grep -v '/e2e$$'); \
	if [ -z "$$pkgs" ]; then echo "unit: no packages to test"; \
	else echo "$(GO) test <every package but ./e2e>"; $(GO) test -timeout 5m $$pkgs; fi
	$(GO) test -tags manpages -run TestManPages ./cmd/netns-run

e2e-build: build
	CGO_ENABLED=0 $(GO) build -o $(BIN)/probe ./e2e/probe
	CGO_ENABLED=0 $(GO) build -o $(BIN)/outerns ./e2e/outerns
	CGO_ENABLED=0 $(GO) test -c -o $(BIN)/e2e.test ./e2e

e2e: e2e-build
	E2E_USER='$(E2E_USER)' E2E_TIMEOUT='$(E2E_TIMEOUT)' E2E_RUN='$(E2E_RUN)' E2E_ARGS='$(E2E_ARGS)' \
		scripts/run-e2e.sh $(BIN)

soak: e2e-build
	E2E_USER='$(E2E_USER)' E2E_TIMEOUT=6h E2E_LAUNCHER_TIMEOUT=6h10m E2E_RUN='^TestSoak$$' E2E_ARGS='-soak-cycles=10000' \
		scripts/run-e2e.sh $(BIN)

# The seed corpora run in unit already; this also mutates them a while.
fuzz-short:
	GO='$(GO)' scripts/fuzz-short.sh

test: unit fuzz-short e2e

# demo: build, then show a sandbox serving a published port and reaching out.
demo: build
	CGO_ENABLED=0 $(GO) build -o $(BIN)/probe ./e2e/probe
	scripts/demo.sh $(BIN)

# make bench: netns-run side by side with a kernel veth, slirp4netns and pasta
# (bench/run.sh; run as root: it installs what is missing and drops to
# $(E2E_USER) for every measured tool). A measurement, never a pass/fail
# gate, and not part of `make test`. BENCH_ROUNDS=N (default 3).
.PHONY: bench
bench: build
	GO='$(GO)' NETNS_RUN='$(BIN)/netns-run' BENCH_USER='$(E2E_USER)' bench/run.sh
