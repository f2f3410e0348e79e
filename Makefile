# ctvnc: build, test, lint, demo, bench, sanitizers.
# `make test` on a fresh Debian machine installs what it needs first.

CC        ?= cc
CFLAGS    ?= -O2 -g
STRICT     = -std=c99 -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes -Wcast-qual -Werror
LUA54_INC ?= /usr/include/lua5.4
JIT_INC   ?= /usr/include/luajit-2.1
SRC        = $(wildcard csrc/*.c)
HDR        = $(wildcard csrc/*.h)

# Debian packages the build, the suites, the simulator and the demo use.
PKGS = lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev libcurl4-openssl-dev \
       lua-cjson lua-busted lua-check lua-socket luarocks nginx \
       libnginx-mod-http-lua openssl cppcheck valgrind nodejs \
       clang novnc websockify python3-requests wrk curl \
       tigervnc-standalone-server x11-xserver-utils chromium

.PHONY: all build deps test lint demo bench valgrind asan fuzz install clean

all: build

build: build/5.4/ctvnc/core.so build/jit/ctvnc/core.so build/asan/ctvnc/core.so

build/5.4/ctvnc/core.so: $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(STRICT) $(CFLAGS) -fPIC -fvisibility=hidden -shared -I$(LUA54_INC) -o $@ $(SRC) -lcurl

build/jit/ctvnc/core.so: $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(STRICT) $(CFLAGS) -fPIC -fvisibility=hidden -shared -I$(JIT_INC) -o $@ $(SRC) -lcurl

# Lua 5.4 build with AddressSanitizer and UBSan, for `make asan`.
build/asan/ctvnc/core.so: $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(STRICT) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	  -fno-sanitize-recover=undefined -fPIC -shared -I$(LUA54_INC) -o $@ $(SRC) -lcurl

deps:
	@missing=$$(for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

test: deps build
	@sh spec/support/test.sh

lint:
	luacheck -q lua spec bin examples
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance --std=c99 csrc

valgrind: deps build
	@SUITES=valgrind sh spec/support/test.sh

asan: deps build
	@SUITES=asan sh spec/support/test.sh

# libFuzzer over the pure C parts (csrc/url.c, csrc/frames.c), FUZZ_SECONDS per harness.
FUZZ_SECONDS ?= 60
fuzz: deps
	@sh fuzz/run.sh $(FUZZ_SECONDS)

demo: deps build
	@sh examples/demo.sh

bench: deps build
	@sh bench/run.sh

install:
	luarocks make --deps-mode=none ctvnc-scm-1.rockspec

clean:
	rm -rf build

# The console gateway in front of the simulator and a real desktop, for a
# browser on this machine; Ctrl-C stops it (examples/openresty/demo.sh).
.PHONY: console-demo
console-demo: deps build/jit/ctvnc/core.so
	@sh examples/openresty/demo.sh
