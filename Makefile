# ctvnc: build, test, lint, demo, bench, sanitizers.
# `make test` and `make demo` install the Debian packages they need first
# (as root; otherwise they name the packages and stop).

CC      ?= cc
CFLAGS  ?= -O2 -g
STRICT   = -std=c99 -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes -Wcast-qual -Werror
SRC      = $(wildcard csrc/*.c)
HDR      = $(wildcard csrc/*.h)
LDLIBS   = -lcurl -lz

# One module per Lua ABI, each against that version's own headers. LuaJIT
# (OpenResty, Debian's luajit2) runs the 5.1 module: build/jit is a copy of
# it for nginx.conf, the gateway and the benchmarks.
VERSIONS = 5.1 5.2 5.3 5.4
MODULES  = $(foreach v,$(VERSIONS),build/$(v)/ctvnc/core.so) build/jit/ctvnc/core.so

# Debian packages, by what needs them.
BUILD_PKGS = gcc make libc6-dev libcurl4-openssl-dev zlib1g-dev lua5.4 liblua5.4-dev lua-cjson
DEMO_PKGS  = $(BUILD_PKGS) lua-socket nginx libnginx-mod-http-lua curl openssl
TEST_PKGS  = $(DEMO_PKGS) lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev \
             luajit2 libluajit2-5.1-dev lua-busted lua-check luarocks zip unzip cppcheck valgrind \
             clang binutils nodejs novnc websockify python3-requests \
             tigervnc-standalone-server x11-xserver-utils xterm chromium redis-server
BENCH_PKGS = $(TEST_PKGS) wrk libssl-dev

.PHONY: all build asan deps deps-demo deps-bench e2e-deps test lint demo bench bench-batch valgrind fuzz install clean

all: build

build: $(MODULES)

define module
build/$(1)/ctvnc/core.so: $$(SRC) $$(HDR)
	@mkdir -p $$(@D)
	$$(CC) $$(STRICT) $$(CFLAGS) -fPIC -fvisibility=hidden -shared -I/usr/include/lua$(1) \
	  -o $$@ $$(SRC) $$(LDLIBS)
endef
$(foreach v,$(VERSIONS),$(eval $(call module,$(v))))

build/jit/ctvnc/core.so: build/5.1/ctvnc/core.so
	@mkdir -p $(@D)
	cp $< $@

# Lua 5.4 module with AddressSanitizer and UBSan: `make asan` only.
build/asan/ctvnc/core.so: $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(STRICT) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	  -fno-sanitize-recover=undefined -fPIC -shared -I/usr/include/lua5.4 -o $@ $(SRC) $(LDLIBS)

# $(call need,PKGS): installs the packages that are missing as root;
# otherwise stops at once with one line naming them.
missing = $(shell for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
            grep -q '^install ok installed' || echo $$p; done)
need = $(eval MISSING := $(call missing,$(1)))$(if $(MISSING),$(if $(filter 0,$(shell id -u)),\
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(MISSING),\
  $(error missing Debian packages; as root run: apt-get install -y $(MISSING))),@true)

deps:
	$(call need,$(TEST_PKGS))
deps-demo:
	$(call need,$(DEMO_PKGS))
deps-bench:
	$(call need,$(BENCH_PKGS))

# The browser driver of the end-to-end suite (spec/e2e/package.json, pinned).
# NodeSource's nodejs brings npm; Debian's needs the npm package beside it.
e2e-deps:
	@command -v npm > /dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q npm; } || { echo "*** npm is missing; as root run: apt-get \
	install -y npm"; exit 1; }
	@[ spec/e2e/node_modules/.package-lock.json -nt spec/e2e/package-lock.json ] || \
	  (cd spec/e2e && npm ci --no-audit --no-fund --loglevel=error)

test: deps
	@$(MAKE) --no-print-directory build build/asan/ctvnc/core.so e2e-deps
	@bash spec/support/test.sh

lint:
	$(call need,lua-check cppcheck)
	@SUITES="luacheck cppcheck" bash spec/support/test.sh

valgrind: deps build
	@SUITES=valgrind bash spec/support/test.sh

asan: deps build build/asan/ctvnc/core.so
	@SUITES=asan bash spec/support/test.sh

# libFuzzer over the pure C parts (csrc/url.c, csrc/frames.c), FUZZ_SECONDS per harness.
FUZZ_SECONDS ?= 60
fuzz: deps
	@sh fuzz/run.sh $(FUZZ_SECONDS)

demo: deps-demo
	@$(MAKE) --no-print-directory build/5.4/ctvnc/core.so
	@sh examples/demo.sh

bench: deps-bench build build/bench/relay_load
	@sh bench/run.sh

# the batch benchmark alone (issues 14 and 21), with its perf profile
bench-batch: deps-bench build
	@sh bench/run.sh batch

# both ends of the console relay benchmark (bench/relay.sh)
build/bench/relay_load: bench/relay_load.c
	@mkdir -p $(@D)
	$(CC) $(STRICT) $(CFLAGS) -o $@ $< -lssl -lcrypto

# the rock for one Lua (LuaRocks' own default on Debian 12 is 5.1)
LUA_VERSION ?= 5.4
install:
	$(call need,$(BUILD_PKGS) luarocks)
	luarocks --lua-version=$(LUA_VERSION) make --deps-mode=none ctvnc-scm-1.rockspec

clean:
	rm -rf build

# The console gateway in front of the simulator and a real desktop, for a
# browser on this machine; Ctrl-C stops it (examples/openresty/demo.sh).
.PHONY: console-demo
console-demo: deps build
	@sh examples/openresty/demo.sh
