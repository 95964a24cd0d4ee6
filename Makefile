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
# Slow or downloaded things live outside the repository, shared by clones.
CACHE       ?= $(HOME)/.cache/rawstor
FIO_ENGINE  := $(BUILD)/librawstor_fio.so

SHELL       := /bin/bash
.PHONY: all build demo header check-header cbindgen cargo-fuzz fuzz-smoke lint test test-ec test-replicas test-failover test-full bench-redundancy bench-spread test-rust test-c test-asan \
        test-valgrind test-cli test-mdt test-bounds test-pkgconfig test-fio test-python python-wheel qemu test-qemu test-qemu-vm bench-qemu fio-engine install \
        bench bench-file bench-python clean

all: build

build:
	$(CARGO) build --release --workspace

## The main job: a store on the embedded default location, an object,
## a verified write/read pass and a short benchmark.
demo: build
	bash tests/demo.sh

## cargo fuzz runs on the stable toolchain with RUSTC_BOOTSTRAP=1 (it
## passes -Z flags to rustc for its sanitizer and coverage).
CARGO_FUZZ_VERSION := 0.13.2
cargo-fuzz:
	@cargo fuzz --version 2>/dev/null | grep -q '$(CARGO_FUZZ_VERSION)' || \
		$(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

## A short fuzz run of the wire codec (part of `make test`); FUZZ_SECONDS longer by hand.
FUZZ_SECONDS ?= 15
fuzz-smoke: cargo-fuzz
	cd librawstor && RUSTC_BOOTSTRAP=1 cargo fuzz run wire --fuzz-dir fuzz -- \
		-max_total_time=$(FUZZ_SECONDS) -max_len=8192 -print_final_stats=1 2>&1 | \
		grep -E 'Done [0-9]+ runs|stat::number_of_executed_units|ERROR|panicked|SUMMARY' ; \
		test $${PIPESTATUS[0]} -eq 0

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
test: lint build test-rust test-c test-asan test-valgrind test-cli test-mdt test-bounds test-pkgconfig test-fio test-ec test-replicas test-failover test-full \
      test-python test-qemu fuzz-smoke
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
## rawstor-mdt with four rawstor-ost: registration, placement, failover, repair.
test-mdt: build $(FIO_ENGINE)
	bash tests/mdt.sh $(RAWSTOR)
	bash tests/placement.sh $(RAWSTOR) $(FIO_ENGINE)

## Huge lengths and ranges past the end on every kind of target, under a
## memory limit; one size seen by every handle.
test-bounds: $(BUILD)/test_bounds
	bash tests/bounds.sh $(RAWSTOR) $(BUILD)/test_bounds

test-pkgconfig: build
	rm -rf $(BUILD)/prefix
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(BUILD)/prefix
	PKG_CONFIG_PATH=$(CURDIR)/$(BUILD)/prefix/lib/pkgconfig sh -c \
		'$(CC) -std=c11 -Wall -Wextra -Werror tests/c/example.c $$(pkg-config --cflags --libs rawstor) -o $(BUILD)/example'
	LD_LIBRARY_PATH=$(BUILD)/prefix/lib $(BUILD)/example

## Python bindings: a virtualenv in the cache with pytest and numpy, the
## package installed from bindings/python and tested against the built
## library and real rawstor-ost servers; then the wheel that bundles the
## library, and the installed library found through pkg-config.
VENV        := $(CACHE)/venv
VENV_PY     := $(VENV)/bin/python
PIP         := $(VENV_PY) -m pip --quiet --disable-pip-version-check
PY_CHECK    := import rawstor, tempfile; d = tempfile.TemporaryDirectory(); c = rawstor.Client(); \
	o = c.open(c.create("file://" + d.name, "1M")); o.write(0, b"w" * 4096); \
	assert o.read(0, 4096) == b"w" * 4096; o.close(); d.cleanup(); print("found", rawstor.LIBRARY_PATH)
$(VENV)/.ready:
	python3 -m venv $(VENV)
	$(PIP) install "pytest>=7" numpy "setuptools>=70.1" wheel ruff
	touch $@

python-wheel: build $(VENV)/.ready
	rm -rf bindings/python/rawstor/_lib $(BUILD)/wheels
	mkdir -p bindings/python/rawstor/_lib
	cp $(LIB) bindings/python/rawstor/_lib/librawstor.so
	$(PIP) wheel --no-deps --no-build-isolation -w $(BUILD)/wheels bindings/python; \
		rc=$$?; rm -rf bindings/python/rawstor/_lib bindings/python/build; exit $$rc
	@ls $(BUILD)/wheels/*.whl

test-python: build $(VENV)/.ready python-wheel test-pkgconfig
	cd bindings/python && $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(PIP) install --no-deps --no-build-isolation --force-reinstall bindings/python
	RAWSTOR_LIBRARY=$(CURDIR)/$(LIB) RAWSTOR_OST=$(CURDIR)/$(RELEASE)/rawstor-ost \
		$(VENV_PY) -m pytest -q bindings/python/tests
	cd / && env -u RAWSTOR_LIBRARY PKG_CONFIG_PATH=$(CURDIR)/$(BUILD)/prefix/lib/pkgconfig \
		$(VENV_PY) -c '$(PY_CHECK)' | grep -F '$(CURDIR)/$(BUILD)/prefix/lib/librawstor.so'
	$(PIP) install --no-deps --force-reinstall $(BUILD)/wheels/*.whl
	cd / && env -u RAWSTOR_LIBRARY $(VENV_PY) -c '$(PY_CHECK)' | grep -F 'site-packages/rawstor/_lib/librawstor.so'

## 4K random reads from Python: the bindings beside os.pread (BENCHMARKS.md).
bench-python: build $(VENV)/.ready
	RAWSTOR_LOG=quiet RAWSTOR_LIBRARY=$(CURDIR)/$(LIB) RAWSTOR_OST=$(CURDIR)/$(RELEASE)/rawstor-ost \
		PYTHONPATH=bindings/python $(VENV_PY) bindings/python/bench.py

## QEMU 10.0.2 with the rawstor block driver (qemu-patch/), built in the
## cache and linked at target/qemu/bin; the VM test's kernel, busybox and
## firmware come from Debian's packages, also cached.
QEMU_BIN    := target/qemu/bin
qemu: build
	prefix=$$(qemu-patch/build-qemu.sh $(CACHE)) && mkdir -p $(QEMU_BIN) && \
		for b in qemu-img qemu-io qemu-system-x86_64; do ln -sfn $$prefix/bin/$$b $(QEMU_BIN)/$$b; done
	@$(QEMU_BIN)/qemu-img --version | head -n1

test-qemu: qemu
	bash tests/qemu.sh $(RAWSTOR) $(QEMU_BIN) $$(qemu-patch/vm-assets.sh $(CACHE))

## qemu-img bench: the rawstor driver beside file-posix and qemu-nbd (BENCHMARKS.md).
bench-qemu: qemu
	bash bench/qemu.sh $(RAWSTOR) $(QEMU_BIN)

## Only the VM boot checks.
test-qemu-vm: qemu
	bash tests/qemu.sh $(RAWSTOR) $(QEMU_BIN) $$(qemu-patch/vm-assets.sh $(CACHE)) --vm-only

## fio external engine, compiled against the source of the installed fio.
fio-engine: $(FIO_ENGINE)

$(FIO_ENGINE): fio-engine/librawstor_fio.c include/rawstor.h build
	@mkdir -p $(BUILD)
	@command -v fio >/dev/null || { echo "fio is not installed: apt-get install fio" >&2; exit 1; }
	src=$$(fio-engine/fetch-fio.sh $(CACHE)) && \
	$(CC) -std=gnu11 -O2 -g -fPIC -shared -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
		-D_GNU_SOURCE -D_LARGEFILE_SOURCE -D_FILE_OFFSET_BITS=64 \
		-include $$src/config-host.h -I$$src -Iinclude \
		fio-engine/librawstor_fio.c -L$(RELEASE) -Wl,-rpath,$(CURDIR)/$(RELEASE) -lrawstor -o $@

test-fio: $(FIO_ENGINE)
	bash tests/fio.sh $(RAWSTOR) $(FIO_ENGINE)

## Erasure coding fault tests (seven OSTs, SIGKILLs, write hole, leases).
test-ec: $(FIO_ENGINE)
	bash tests/ec.sh $(RAWSTOR) $(FIO_ENGINE)

## Replication fault tests on rawstor-mdt (four OSTs, SIGKILLs, leases, write intent).
test-replicas: $(FIO_ENGINE)
	bash tests/replicas.sh $(RAWSTOR) $(FIO_ENGINE)

## Failover latency: an OST killed or hung under a writer and a reader,
## replicas:3 and ec:4+2; each max latency must stay under FAILOVER_MAX_MS.
test-failover: $(FIO_ENGINE)
	bash tests/failover.sh $(RAWSTOR) $(FIO_ENGINE)

## Full disks (small ext4 file systems on loop devices: needs root).
test-full: $(FIO_ENGINE)
	bash tests/full.sh $(RAWSTOR) $(FIO_ENGINE)

install:
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/librawstor.so
	install -m 0644 $(RELEASE)/librawstor.a $(DESTDIR)$(PREFIX)/lib/librawstor.a
	install -m 0644 include/rawstor.h $(DESTDIR)$(PREFIX)/include/rawstor.h
	install -m 0755 $(RAWSTOR) $(DESTDIR)$(PREFIX)/bin/rawstor
	install -m 0755 $(RELEASE)/rawstor-ost $(DESTDIR)$(PREFIX)/bin/rawstor-ost
	install -m 0755 $(RELEASE)/rawstor-mdt $(DESTDIR)$(PREFIX)/bin/rawstor-mdt
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' librawstor/rawstor.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/rawstor.pc

## One table: rawstor through fio next to local-file and qemu-nbd baselines.
bench: build $(FIO_ENGINE) $(BUILD)/pingpong
	RAWSTOR=$(RAWSTOR) RAWSTOR_FIO=$(FIO_ENGINE) PINGPONG=$(BUILD)/pingpong bench/run

## replicas:3 and ec:4+2 against one ost:// copy, and the Reed-Solomon encoder.
bench-redundancy: build $(FIO_ENGINE) $(BUILD)/pingpong
	$(RAWSTOR) bench-ec --layout ec:4+2
	RAWSTOR=$(RAWSTOR) RAWSTOR_FIO=$(FIO_ENGINE) PINGPONG=$(BUILD)/pingpong bench/run --redundancy

## One replicas:3 object placed whole against the same over 32 MiB pieces,
## on 8 OSTs: random reads, 1 MiB writes, repair after an OST dies.
bench-spread: build $(FIO_ENGINE)
	bash bench/spread.sh $(RAWSTOR) $(FIO_ENGINE)

$(BUILD)/pingpong: bench/pingpong.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -Wall -Wextra -Werror $< -lpthread -o $@

## The CLI's own benchmark against plain pread/pwrite (no fio).
bench-file: build
	bash bench/file.sh

clean:
	$(CARGO) clean
