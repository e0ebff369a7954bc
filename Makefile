# make test: installs what the tests need on a fresh Debian machine, then runs
# every check. Under it TLSEDGE_REQUIRE_TOOLS=1 turns a missing tool into a
# failure instead of a skip, and TLSEDGE_LONG=1 runs the long tests.
GO ?= go
DEB_PACKAGES := curl openssl util-linux wrk nghttp2-client slowhttptest testssl.sh chromium nginx postgresql \
	groff-base man-db bash zsh fish systemd git make

.PHONY: test deps fmt vet gotest build

test: deps fmt vet gotest

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq $$missing; \
	fi

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Two phases. The packages' own tests run with the race detector. Then the
# end-to-end tests, alone so that load and latency figures are not skewed by
# other packages' tests: they build the tlsedge binary with -race and drive
# it, so the server is race-checked, while the test process that generates
# load (thousands of TLS handshakes) runs without the detector's slowdown.
gotest:
	TLSEDGE_REQUIRE_TOOLS=1 TLSEDGE_LONG=1 $(GO) test -race -count=1 -timeout 40m $$($(GO) list ./... | grep -v /integration$$)
	TLSEDGE_REQUIRE_TOOLS=1 TLSEDGE_LONG=1 $(GO) test -count=1 -timeout 40m ./integration

# VERSION is stamped into the binary (tlsedge version, --version): git
# describe's answer, so a build from a checkout names its commit even where
# Go's own VCS stamping is off (-buildvcs=false). OUT is where it goes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
OUT ?= tlsedge

build:
	$(GO) build -ldflags "-X tlsedge/cli.buildVersion=$(VERSION)" -o $(OUT) .
