# ffipar -- build, test, bench, install. `make help` lists the targets.
PREFIX       ?= /usr/local
LUA_VERSION  ?= 5.1
LUA_LIBDIR   ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
LUAJIT       ?= luajit
INSTALL      ?= install
CC           ?= cc

CFLAGS  ?= -O2 -g -Wall -Wextra
LIBFLAG ?= -shared
# Flags the shim needs whatever the user sets; kept apart from CFLAGS.
# The Lua C API comes from the luajit executable at run time (never linked);
# -z nodelete keeps the shim mapped while workers run after the main state
# has closed at exit.
# A luajit given by path (make test LUAJIT=/opt/lj/bin/luajit) brings its
# prefix: headers from there, and the C tests' libluajit; a bare name is the
# system's (pkg-config).
LUAJIT_PREFIX ?= $(if $(and $(findstring /,$(LUAJIT)),$(filter 1,$(words $(LUAJIT)))),$(abspath $(dir $(LUAJIT))..))
LUAJIT_INC  ?= $(if $(LUAJIT_PREFIX),-I$(firstword $(wildcard $(LUAJIT_PREFIX)/include/luajit-*)),\
  $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1))
SHIM_CFLAGS  = -std=c11 -fPIC -pthread -fvisibility=hidden $(LUAJIT_INC)
SHIM_LDFLAGS = -pthread -Wl,-z,nodelete

# Debian packages: `make example` needs EXAMPLE_DEPS; `make test` also TEST_DEPS;
# `make bench` also BENCH_DEPS (gnuplot draws the chart; neovim runs a loop case). `make deps` installs the
# missing ones, without recommends (gnuplot's would bring ImageMagick and Ghostscript;
# gcc's would bring libc6-dev, hence listed).
EXAMPLE_DEPS ?= luajit libluajit-5.1-dev gcc libc6-dev make pkg-config
TEST_DEPS    ?= lua-unit spin luarocks lua-luv neovim
BENCH_DEPS   ?= gnuplot-nox lua-luv neovim
DEPS ?= $(EXAMPLE_DEPS)

SRCS = $(sort $(wildcard csrc/*.c))
OBJS = $(SRCS:.c=.o)
HDRS = csrc/ffipar.h csrc/shim.h
LIB  = ffi/libffipar.so
CDEF = ffi/ffipar/cdef.lua
CTESTS = $(patsubst test/c/%.c,test/c/%,$(wildcard test/c/*.c))
# Everything the tests and benches link against: the shim's objects plus a
# real libluajit for the Lua API symbols (C tests have no luajit executable).
CTEST_LIBS = -pthread $(if $(LUAJIT_PREFIX),-L$(LUAJIT_PREFIX)/lib -Wl$(comma)-rpath$(comma)$(LUAJIT_PREFIX)/lib) -lluajit-5.1 -lm
comma := ,
# The shim and the C tests are rebuilt when the LuaJIT they are built for changes.
LJ_CONF = build/luajit.conf
$(shell mkdir -p build; echo '$(LUAJIT_INC) $(CTEST_LIBS)' | cmp -s - $(LJ_CONF) || echo '$(LUAJIT_INC) $(CTEST_LIBS)' > $(LJ_CONF))

# luaunit and luv are Debian's (lua-unit, lua-luv), found after the chosen
# luajit's own paths.
LUAUNIT_PATH ?= /usr/share/lua/5.1/?.lua
LUV_CPATH    ?= /usr/lib/$(shell $(CC) -print-multiarch 2>/dev/null)/lua/5.1/?.so
RUN = LUA_PATH='ffi/?.lua;test/?.lua;tools/?.lua;bench/?.lua;;$(LUAUNIT_PATH)' \
  LUA_CPATH=';;$(LUV_CPATH)' FFIPAR_LIB=./$(LIB) \
  FFIPAR_LUAJIT='$(if $(LUAJIT_PREFIX),$(abspath $(LUAJIT)),$(LUAJIT))'

all: $(LIB) $(CDEF)

$(LIB): $(OBJS)
	$(CC) $(LIBFLAG) $(SHIM_LDFLAGS) $(LDFLAGS) -o $@ $(OBJS)

csrc/%.o: csrc/%.c $(HDRS) $(LJ_CONF)
	$(CC) $(SHIM_CFLAGS) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(CDEF): csrc/ffipar.h tools/gencdef.lua
	$(LUAJIT) tools/gencdef.lua csrc/ffipar.h > $@.tmp && mv $@.tmp $@

test/c/%: test/c/%.c $(SRCS) $(HDRS) $(LJ_CONF)
	$(CC) -std=c11 -O2 -g -Wall -Wextra -Icsrc $(LUAJIT_INC) $(CTEST_CFLAGS) -o $@ $< $(SRCS) $(CTEST_LIBS)

deps:
	@missing=""; for p in $(DEPS) $(EXTRA_DEPS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The README's first command: the main example on a real input.
example: deps all
	$(RUN) $(LUAJIT) examples/stream_stats.lua $(EXAMPLE_INPUT)

# The README's second command: every test; ends with "N passed, M failed".
test: EXTRA_DEPS += $(TEST_DEPS)
test: deps all $(CTESTS)
	$(RUN) $(LUAJIT) test/run.lua $(TESTFLAGS)

# Sanitizer builds of the shim and the C tests, run under the same suite.
# LuaJIT itself is not instrumented, so gcc's runtime is preloaded into it
# (gcc's runtimes can be preloaded; clang's cannot).
SAN_CC ?= gcc
asan:
	$(MAKE) clean
	$(MAKE) CC=$(SAN_CC) CFLAGS="-O1 -g -fsanitize=address -fno-omit-frame-pointer" \
	  SHIM_LDFLAGS="-pthread -Wl,-z,nodelete -fsanitize=address" \
	  CTEST_CFLAGS="-fsanitize=address" all $(CTESTS)
	$(RUN) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  LD_PRELOAD=$$($(SAN_CC) -print-file-name=libasan.so) \
	  FFIPAR_SANITIZER=asan $(LUAJIT) test/run.lua $(TESTFLAGS); \
	  rc=$$?; $(MAKE) clean >/dev/null; $(MAKE) all >/dev/null; exit $$rc

tsan:
	$(MAKE) clean
	$(MAKE) CC=$(SAN_CC) CFLAGS="-O1 -g -fsanitize=thread" \
	  SHIM_LDFLAGS="-pthread -Wl,-z,nodelete -fsanitize=thread" \
	  CTEST_CFLAGS="-fsanitize=thread" all $(CTESTS)
	$(RUN) TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0" \
	  LD_PRELOAD=$$($(SAN_CC) -print-file-name=libtsan.so) \
	  FFIPAR_SANITIZER=tsan $(LUAJIT) test/run.lua $(TESTFLAGS); \
	  rc=$$?; $(MAKE) clean >/dev/null; $(MAKE) all >/dev/null; exit $$rc

# The Lua suites and the C tests under valgrind's memcheck: an invalid
# access, a use of uninitialised memory or a definite leak fails the run
# (valgrind exits 9, and a closing "0 passed, 1 failed" says so to CI).
# valgrind runs one thread at a time; --fair-sched hands its lock round in
# turn, so a thread woken by a cancel is not starved by busy workers (the
# cancelled parallel call test ran to the end of its work without it).
VALGRIND = valgrind -q --fair-sched=yes --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite
valgrind: EXTRA_DEPS += $(TEST_DEPS) valgrind
valgrind: deps all $(CTESTS)
	$(RUN) FFIPAR_VALGRIND="$(VALGRIND)" $(VALGRIND) $(LUAJIT) test/run.lua $(TESTFLAGS); \
	  rc=$$?; if [ $$rc -eq 9 ]; then echo "valgrind reported errors (above)"; echo "0 passed, 1 failed"; fi; \
	  exit $$rc

# The suite on OpenResty's luajit2 (Debian's luajit2 conflicts with luajit,
# so it is unpacked into build/luajit2 instead of installed).
LJ2 = build/luajit2/root
$(LJ2)/usr/bin/luajit:
	mkdir -p build/luajit2 && cd build/luajit2 && \
	  apt-get download luajit2 libluajit2-5.1-2 libluajit2-5.1-common >/dev/null && \
	  for f in *.deb; do dpkg -x $$f root; done
test-luajit2: EXTRA_DEPS += $(TEST_DEPS)
test-luajit2: deps all $(CTESTS) $(LJ2)/usr/bin/luajit
	LD_LIBRARY_PATH=$(LJ2)/usr/lib/x86_64-linux-gnu \
	  LUA_PATH='ffi/?.lua;test/?.lua;tools/?.lua;$(LJ2)/usr/share/luajit-2.1.0-beta3/?.lua;;' \
	  FFIPAR_LIB=./$(LIB) FFIPAR_LUAJIT="$(CURDIR)/$(LJ2)/usr/bin/luajit" \
	  $(LJ2)/usr/bin/luajit test/run.lua $(TESTFLAGS)

# The suite on upstream LuaJIT built from a source tree you have (a git
# checkout or a release; nothing is downloaded here), e.g.
#   make test-luajit-src LUAJIT_SRC=~/src/LuaJIT XCFLAGS=-DLUAJIT_DISABLE_GC64
# The tree is copied to build/luajit-src, built with XCFLAGS and installed
# into build/luajit; then `make test LUAJIT=build/luajit/bin/luajit`.
LJSRC_PREFIX = $(CURDIR)/build/luajit
test-luajit-src:
	@test -f "$(LUAJIT_SRC)/src/lj_obj.h" || { echo "set LUAJIT_SRC to a LuaJIT source tree"; exit 2; }
	rm -rf build/luajit-src $(LJSRC_PREFIX)
	mkdir -p build && cp -a "$(LUAJIT_SRC)" build/luajit-src
	$(MAKE) -C build/luajit-src clean >/dev/null
	$(MAKE) -C build/luajit-src PREFIX=$(LJSRC_PREFIX) XCFLAGS="$(XCFLAGS)" >build/luajit-src.log
	$(MAKE) -C build/luajit-src install PREFIX=$(LJSRC_PREFIX) XCFLAGS="$(XCFLAGS)" >>build/luajit-src.log
	$(LJSRC_PREFIX)/bin/luajit -e 'print(jit.version, "GC64: " .. tostring(require("ffi").abi("gc64")))'
	$(MAKE) test LUAJIT=$(LJSRC_PREFIX)/bin/luajit

bench: EXTRA_DEPS += $(BENCH_DEPS)
bench: deps all
	$(MAKE) -C bench/c CC="$(CC)"
	$(RUN) $(LUAJIT) bench/run.lua $(BENCHFLAGS)

install: all
	$(INSTALL) -d $(DESTDIR)$(LUA_LIBDIR) $(DESTDIR)$(LUA_SHAREDIR)/ffipar
	$(INSTALL) -m 0755 $(LIB) $(DESTDIR)$(LUA_LIBDIR)/
	$(INSTALL) -m 0644 ffi/ffipar.lua $(DESTDIR)$(LUA_SHAREDIR)/
	$(INSTALL) -m 0644 ffi/ffipar/*.lua $(DESTDIR)$(LUA_SHAREDIR)/ffipar/

uninstall:
	rm -f $(DESTDIR)$(LUA_LIBDIR)/libffipar.so $(DESTDIR)$(LUA_SHAREDIR)/ffipar.lua
	rm -rf $(DESTDIR)$(LUA_SHAREDIR)/ffipar
	@# the lua/ and lua/5.1/ directories install may have made, when left empty
	@for d in $(DESTDIR)$(LUA_LIBDIR) $(DESTDIR)$(LUA_SHAREDIR); do \
	  rmdir "$$d" 2>/dev/null && rmdir "$$(dirname "$$d")" 2>/dev/null; done; true

clean:
	rm -f $(OBJS) $(LIB) $(CDEF) $(CTESTS)
	-$(MAKE) -C bench/c clean 2>/dev/null

# Concept-specific targets (e.g. the gate's model check) live in mk/*.mk.
-include $(wildcard mk/*.mk)

help:
	@echo "make example | test | asan | tsan | valgrind | test-luajit2 | test-luajit-src | model | bench | install | uninstall | clean"

.PHONY: all deps example test asan tsan valgrind test-luajit2 test-luajit-src bench install uninstall clean help
