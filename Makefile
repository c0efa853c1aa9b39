# sluice - build, set-up and tests.  `make run` and `make test` do all set-up on a
# fresh Debian 12 machine (as root they apt-get what is missing; otherwise they print
# the exact apt-get line).  SAN=1 builds everything with ASan + UBSan into build-san/.

CC       ?= cc
PKGS     := libuv yaml-0.1 jansson libcrypto libssl hiredis zlib libbrotlienc libbrotlidec libnghttp2
# Debian packages the project needs: build, unit tests, fuzzing, integration tests.
# prometheus: /usr/bin/prometheus and /usr/bin/promtool, for deploy/prometheus/ and its tests;
# chromium: the status page's test in a headless browser.
DEB_PKGS := gcc make pkg-config libuv1-dev libyaml-dev libjansson-dev libssl-dev libcmocka-dev clang \
            libclang-rt-14-dev python3-pytest python3-requests python3-h11 curl \
            libhiredis-dev redis-server zlib1g-dev libbrotli-dev libnghttp2-dev nghttp2-client \
            python3-brotli python3-h2 \
            prometheus chromium

ifeq ($(SAN),1)
BUILD    := build-san
OPT      := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -DSL_SAN=1
LDSAN    := -fsanitize=address,undefined
else
BUILD    := build
OPT      := -O2
LDSAN    :=
endif

WARN     := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-missing-field-initializers -Wformat=2
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS   += -std=gnu11 -D_GNU_SOURCE -g $(OPT) $(WARN) -pthread -MMD -MP $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -pthread -lm
LDFLAGS  += $(LDSAN)

LIB_SRC  := $(sort $(shell find src -name '*.c' ! -name main.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/status_page.o
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
PYTEST   := /usr/bin/python3 -m pytest

.PHONY: all deps run test unit integration asan fuzz fuzz-run bench clean format
all: $(BUILD)/sluice $(BUILD)/demo-origin

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The admin listener's status page: src/ops/status_page.html compiled in as sl_status_page
# (src/ops/status_page.h). tools/embed, built with the host compiler, writes it as C.
HOSTCC   ?= cc
$(BUILD)/tools/embed build-fuzz/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(HOSTCC) -std=c99 -O2 -Wall -Wextra -Werror -o $@ $<

$(BUILD)/gen/status_page.c build-fuzz/gen/status_page.c: %/gen/status_page.c: src/ops/status_page.html %/tools/embed
	@mkdir -p $(dir $@)
	$*/tools/embed sl_status_page $< $@ status_page.h

$(BUILD)/obj/gen/status_page.o: $(BUILD)/gen/status_page.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc/ops -c $< -o $@

$(BUILD)/libsluice.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/sluice: $(BUILD)/obj/src/main.o $(BUILD)/libsluice.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/demo-origin: $(BUILD)/obj/examples/demo_origin.o $(BUILD)/libsluice.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libsluice.a $(LDLIBS) -lcmocka

# deps: install what is missing (root) or print the apt-get line (non-root).
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; } || exit 1; \
	  else \
	    echo "deps: missing packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

run: deps
	@$(MAKE) --no-print-directory all
	@exec ./examples/run-demo.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: all
	SLUICE_BUILD=$(BUILD) $(PYTEST) -q -p no:cacheprovider tests/integration

test: deps
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory integration

asan:
	@$(MAKE) --no-print-directory SAN=1 all unit integration

# libFuzzer targets: every library source rebuilt with clang and coverage.
FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer-no-link,address,undefined -DSL_FUZZ=1 $(PKG_CFLAGS)
FUZZ_OBJ := $(LIB_SRC:%.c=build-fuzz/obj/%.o) build-fuzz/obj/gen/status_page.o
build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c $< -o $@
build-fuzz/obj/gen/status_page.o: build-fuzz/gen/status_page.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -Isrc/ops -c $< -o $@
build-fuzz/%: fuzz/%.c $(FUZZ_OBJ)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -pthread -lm
fuzz: $(FUZZ_BIN)
.SECONDARY: $(FUZZ_OBJ)

FUZZ_SECONDS ?= 60
fuzz-run: fuzz
	@set -e; for f in $(FUZZ_BIN); do n=$$(basename $$f); \
	  mkdir -p build-fuzz/corpus/$$n; \
	  echo "== $$n for $(FUZZ_SECONDS)s"; \
	  if ! $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build-fuzz/ \
	       build-fuzz/corpus/$$n fuzz/corpus/$$n > build-fuzz/$$n.log 2>&1; then \
	    tail -40 build-fuzz/$$n.log; echo "fuzz-run: $$n failed (crash input in build-fuzz/)"; exit 1; \
	  fi; \
	  grep -E "^stat::number_of_executed_units|Done [0-9]+ runs" build-fuzz/$$n.log | tail -2; \
	done

format:
	clang-format -i $$(find src tests/unit fuzz examples -name '*.[ch]')

clean:
	rm -rf build build-san build-fuzz

-include $(shell find build build-san build-fuzz -name '*.d' 2>/dev/null)
