# Makefile: thin wrapper over scripts/deps, CMake and ctest, so that a fresh Debian 12 checkout
# needs only `make demo` or `make test`. The real build lives in CMakeLists.txt; nothing here
# compiles anything by itself. One build directory per configuration.

JOBS ?= 2
CMAKE ?= cmake
CTEST ?= ctest
DEMO_DIR ?= run/demo
# Seconds each libFuzzer target runs in `make fuzz` (tests/fuzz/CMakeLists.txt).
FUZZ_SECONDS ?= 20

# Sanitizer and fuzz builds keep assert() on (RelWithDebInfo would add -DNDEBUG) but stay
# optimized enough for the fuzzers and the integration tests to finish in time.
CHECKED_FLAGS = -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g"
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: all deps build test demo asan fuzz bench clean

all: build

deps:
	./scripts/deps

build: deps
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBAYGATE_WERROR=ON
	$(CMAKE) --build build -j $(JOBS)

# Every registered test: unit, integration and the bench smoke run (fuzz targets are only
# registered in build-fuzz).
test: build
	$(CTEST) --test-dir build --output-on-failure

# Foreground: Ctrl-C makes baygatectl stop the four gateways cleanly.
demo: build
	./build/gateway/baygatectl demo --dir $(DEMO_DIR) --bin build/gateway --profiles conf/profiles

# The unit and integration tests under ASan+UBSan; the bench smoke run is left out, its
# numbers mean nothing there and it only costs CI time.
asan: deps
	$(CMAKE) -S . -B build-asan $(CHECKED_FLAGS) -DBAYGATE_WERROR=ON \
	    -DBAYGATE_SANITIZE=address,undefined
	$(CMAKE) --build build-asan -j $(JOBS)
	$(ASAN_ENV) $(CTEST) --test-dir build-asan --output-on-failure -LE 'fuzz|bench'

fuzz: deps
	CC=clang $(CMAKE) -S . -B build-fuzz $(CHECKED_FLAGS) -DBAYGATE_WERROR=ON -DBAYGATE_FUZZ=ON \
	    -DBG_FUZZ_SMOKE_SECONDS=$(FUZZ_SECONDS)
	$(CMAKE) --build build-fuzz -j $(JOBS)
	$(CTEST) --test-dir build-fuzz --output-on-failure -L fuzz

# The chain benchmark, nghttpx chain vs baygate chain (tests/bench/chain, docs/performance.md),
# through the `bench` target of tests/bench/CMakeLists.txt, which points it at build/gateway.
bench: build
	$(CMAKE) --build build --target bench

# Removes every build tree and the demo's generated state (certificates, configs, logs, ledgers).
clean:
	rm -rf build build-asan build-fuzz run
