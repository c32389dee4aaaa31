# mod_mailguard and dbmail_tap.  `make` builds build/mod_mailguard.so and
# build/dbmail_tap; `make test` installs missing Debian packages (as root),
# builds and runs every test; `make drills` runs the drills (load, faults,
# exact counts); `make deb` builds the Debian packages into build/deb/ and
# `make package-test` installs and removes them.  See README.md.

include apxs.mk

B        ?= build
SANITIZE ?=
CC       ?= cc
OPT      ?= -O2
# EXTRA_CFLAGS / EXTRA_LDFLAGS: flags a packager adds (the Debian build
# passes dpkg-buildflags' hardening flags through them).
EXTRA_CFLAGS  ?=
EXTRA_LDFLAGS ?=
WARN     := -Wall -Wextra -Werror -Wshadow -Wconversion -Wno-sign-conversion \
            -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
BASE_CFLAGS := -std=gnu11 -g $(OPT) -fPIC -D_GNU_SOURCE $(WARN) $(SANITIZE) \
               -fno-strict-aliasing -I mod_mailguard/core -I $(B)/gen \
               $(HIREDIS_CFLAGS) $(PCRE2_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS_ALL := $(SANITIZE) $(EXTRA_LDFLAGS)
LIBS     := $(HIREDIS_LIBS) $(PCRE2_LIBS) -lpthread -lm

CORE_SRC := $(sort $(wildcard mod_mailguard/core/*.c))
LUA_SRC  := $(sort $(wildcard mod_mailguard/core/lua/*.lua))
LUA_INC  := $(sort $(wildcard mod_mailguard/core/lua/include/*.lua))
MOD_SRC  := $(sort $(wildcard mod_mailguard/*.c))
TAP_SRC  := $(filter-out dbmail_tap/tap_main.c,$(sort $(wildcard dbmail_tap/*.c)))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))

CORE_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(CORE_SRC)) $(B)/obj/gen/mg_lua.o
MOD_OBJ  := $(patsubst %.c,$(B)/obj/%.o,$(MOD_SRC))
TAP_OBJ  := $(patsubst %.c,$(B)/obj/%.o,$(TAP_SRC))
UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))

PYTHON   ?= /usr/bin/python3
PYTEST   ?= $(PYTHON) -m pytest
DOCS_SRC := $(wildcard build/docs/*.ini build/docs/*.in) build/docs/gendocs.py dbmail_tap/tap_cmd.h

.PHONY: all deps test lint unit integration asan-test demo bench drills drills-short fuzz \
        install uninstall clean format docs man deb package-test
.DELETE_ON_ERROR:

all: $(B)/mod_mailguard.so $(B)/dbmail_tap

deps:
	@sh build/deps.sh

# ---- generated: the Lua scripts as C strings (single source of truth) ----
# Grouped target (&:): one run makes both files, even under -j.
$(B)/gen/mg_lua.c $(B)/gen/mg_lua.h &: build/embed_lua.sh $(LUA_SRC) $(LUA_INC)
	@mkdir -p $(B)/gen
	sh build/embed_lua.sh $(B)/gen $(LUA_SRC)

$(B)/obj/gen/mg_lua.o: $(B)/gen/mg_lua.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -c -o $@ $<

$(CORE_OBJ) $(TAP_OBJ): | $(B)/gen/mg_lua.h

# ---- the core: no httpd headers, shared by the module and the tap ----
$(B)/obj/mod_mailguard/core/%.o: mod_mailguard/core/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/libmgcore.a: $(CORE_OBJ)
	rm -f $@
	ar rcs $@ $^

# ---- the module: thin httpd glue ----
$(B)/obj/mod_mailguard/%.o: mod_mailguard/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(HTTPD_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/mod_mailguard.so: $(MOD_OBJ) $(B)/libmgcore.a
	$(CC) -shared $(LDFLAGS_ALL) -o $@ $(MOD_OBJ) $(B)/libmgcore.a $(LIBS)

# ---- dbmail_tap ----
$(B)/obj/dbmail_tap/%.o: dbmail_tap/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/libtap.a: $(TAP_OBJ)
	rm -f $@
	ar rcs $@ $^

$(B)/dbmail_tap: $(B)/obj/dbmail_tap/tap_main.o $(B)/libtap.a $(B)/libmgcore.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# ---- unit tests (Check): one binary per file, pure logic ----
$(B)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(B)/libtap.a $(B)/libmgcore.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -Wno-conversion $(CHECK_CFLAGS) -I dbmail_tap -I tests/unit \
	    -o $@ $< $(B)/libtap.a $(B)/libmgcore.a $(LIBS) $(CHECK_LIBS) $(LDFLAGS_ALL)

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

# ---- tests ----
test: deps
	$(MAKE) all unit-bins
	sh build/lint.sh
	sh build/run_unit.sh $(B)
	$(MAKE) integration

# clang-format, cppcheck and the layout rules (build/lint.sh).
lint: deps
	sh build/lint.sh

unit-bins: $(UNIT_BIN)

unit: all unit-bins
	sh build/run_unit.sh $(B)

integration: all
	MG_BUILD=$(abspath $(B)) $(PYTEST) -q -p no:cacheprovider tests/integration

# Unit and integration tests under AddressSanitizer + UBSan, in a build
# tree of their own.  httpd is not instrumented: the tests preload the ASan
# runtime into it (MG_SANITIZER_PRELOAD) and fail on any report.
asan-test: deps
	$(MAKE) B=build/asan OPT=-O1 \
	    SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	    all unit-bins
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 sh build/run_unit.sh build/asan
	MG_BUILD=$(abspath build/asan) MG_SANITIZER_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(PYTEST) -q -p no:cacheprovider tests/integration

demo: deps all
	sh build/demo.sh $(B)

bench: all
	sh build/deps.sh --extra
	sh tests/bench/run.sh $(B)

# Drills: the module and dbmail_tap under load and faults (tests/drills),
# every count checked exactly; a few minutes, so not in `make test`.
# MG_DRILL_SHORT=1 (make drills-short) is the short form CI runs.  -s
# shows the figures each drill prints; -rs why one skipped (wrk missing
# and not root).  pytest fails a run that collects no test (exit 5), as it
# does for `make integration`.
drills: all
	sh build/deps.sh --drills
	MG_BUILD=$(abspath $(B)) $(PYTEST) -q -s -rs -p no:cacheprovider tests/drills

drills-short:
	MG_DRILL_SHORT=1 $(MAKE) drills

fuzz:
	sh build/deps.sh --extra
	sh tests/fuzz/run.sh

install: all man
	sh build/install.sh install $(B)

uninstall:
	sh build/install.sh uninstall $(B)

# ---- documentation: the configuration tables are written once, in
# build/docs/*.ini; README.md's tables and the man pages are generated ----
docs:
	$(PYTHON) build/docs/gendocs.py readme
	$(PYTHON) build/docs/gendocs.py man $(B)/man
	$(PYTHON) build/docs/gendocs.py check

man: $(B)/man/dbmail_tap.8 $(B)/man/mailguard.conf.5

$(B)/man/dbmail_tap.8 $(B)/man/mailguard.conf.5 &: $(DOCS_SRC)
	$(PYTHON) build/docs/gendocs.py man $(B)/man

# ---- Debian packages (files in build/debian/, copied into a temporary
# tree: the repository keeps no debian/ at its top) ----
deb:
	sh build/deps.sh --package
	sh build/deb.sh

# Installs the packages on this machine, checks them and purges them:
# root only (CI); skipped with a message otherwise.
package-test:
	@if [ "$$(id -u)" -ne 0 ]; then \
	    echo "package-test: SKIPPED: it installs and purges packages system-wide; run it as root"; \
	else \
	    $(MAKE) deb && $(PYTEST) -q -p no:cacheprovider tests/package; \
	fi

format:
	clang-format -i $(CORE_SRC) $(MOD_SRC) $(wildcard dbmail_tap/*.c) \
	    $(wildcard mod_mailguard/*.h mod_mailguard/core/*.h dbmail_tap/*.h)

clean:
	rm -rf build/asan build/obj build/gen build/tests build/fuzz build/man \
	    build/deb build/deb-tree build/*.a build/mod_mailguard.so build/dbmail_tap
