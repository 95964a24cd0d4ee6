# rawstor: the one entry point. CI runs the same targets (.ci/run).

PREFIX      ?= /usr/local
CARGO       ?= cargo
CC          ?= cc
CBINDGEN_VERSION := 0.29.4
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
RELEASE     := target/release
BUILD       := target/build
LIB         := $(RELEASE)/librawstor.so
RAWSTOR     := $(RELEASE)/rawstor
CFLAGS_TEST := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pedantic -g -Iinclude
LDFLAGS_TEST := -L$(RELEASE) -lrawstor -lpthread
C_TESTS     := test_api test_threads

.PHONY: all build demo header check-header cbindgen lint test test-rust test-c test-asan \
        test-valgrind test-cli test-pkgconfig install bench clean

all: build

build:
	$(CARGO) build --release --workspace

## The main job: a store on the embedded default location, an object,
## a verified write/read pass and a short benchmark.
demo: build
	bash tests/demo.sh

cbindgen:
	@cbindgen --version 2>/dev/null | grep -q '$(CBINDGEN_VERSION)' || \
		$(CARGO) install cbindgen --version $(CBINDGEN_VERSION) --locked

header: cbindgen
	cbindgen --quiet --config librawstor/cbindgen.toml --crate librawstor --output include/rawstor.h librawstor

check-header: cbindgen
	@mkdir -p $(BUILD)
	cbindgen --quiet --config librawstor/cbindgen.toml --crate librawstor --output $(BUILD)/rawstor.h librawstor
	@diff -u include/rawstor.h $(BUILD)/rawstor.h || \
		{ echo "include/rawstor.h is stale: run 'make header' and commit it"; exit 1; }

lint: check-header
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Everything CI checks (the README's test command).
test: lint build test-rust test-c test-asan test-valgrind test-cli test-pkgconfig
	@echo "all tests passed"

test-rust:
	$(CARGO) test --release --workspace

$(BUILD)/%: tests/c/%.c tests/c/testutil.h include/rawstor.h build
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_TEST) $< $(LDFLAGS_TEST) -o $@

$(BUILD)/asan-%: tests/c/%.c tests/c/testutil.h include/rawstor.h build
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_TEST) -fsanitize=address,undefined -fno-omit-frame-pointer $< $(LDFLAGS_TEST) -o $@

test-c: $(addprefix $(BUILD)/,$(C_TESTS))
	@for t in $(C_TESTS); do LD_LIBRARY_PATH=$(RELEASE) $(BUILD)/$$t || exit 1; done

test-asan: $(addprefix $(BUILD)/asan-,$(C_TESTS))
	@for t in $(C_TESTS); do \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
		LD_LIBRARY_PATH=$(RELEASE) $(BUILD)/asan-$$t || exit 1; done

test-valgrind: $(addprefix $(BUILD)/,$(C_TESTS))
	@for t in $(C_TESTS); do \
		LD_LIBRARY_PATH=$(RELEASE) valgrind -q --error-exitcode=1 --leak-check=no $(BUILD)/$$t || exit 1; done

test-cli: build
	bash tests/cli.sh $(RAWSTOR)

## Installs into a scratch prefix and builds a C program with pkg-config.
test-pkgconfig: build
	rm -rf $(BUILD)/prefix
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(BUILD)/prefix
	PKG_CONFIG_PATH=$(CURDIR)/$(BUILD)/prefix/lib/pkgconfig sh -c \
		'$(CC) -std=c11 -Wall -Wextra -Werror tests/c/example.c $$(pkg-config --cflags --libs rawstor) -o $(BUILD)/example'
	LD_LIBRARY_PATH=$(BUILD)/prefix/lib $(BUILD)/example

install:
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/librawstor.so
	install -m 0644 $(RELEASE)/librawstor.a $(DESTDIR)$(PREFIX)/lib/librawstor.a
	install -m 0644 include/rawstor.h $(DESTDIR)$(PREFIX)/include/rawstor.h
	install -m 0755 $(RAWSTOR) $(DESTDIR)$(PREFIX)/bin/rawstor
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' librawstor/rawstor.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/rawstor.pc

bench: build
	bash bench/file.sh

clean:
	$(CARGO) clean
