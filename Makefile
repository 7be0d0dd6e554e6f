# Thin wrapper over CMake + Ninja. Every target installs missing Debian
# build dependencies first (scripts/deps.sh).
BUILD        ?= build
ASAN_BUILD   ?= build/asan
FUZZ_BUILD   ?= build/fuzz
FUZZ_SECONDS ?= 300
PORT         ?= 9001
PREFIX       ?= /usr/local
CMAKE_FLAGS  ?=

.PHONY: all build deps test test-release test-asan test-fuzz bench fuzz run install format clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKZ_WERROR=ON \
	  -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD)

# Every test: release build, the same tests under ASan/UBSan, and each
# fuzz target for a short run.
test: test-release test-asan test-fuzz

test-release: build
	@scripts/deps.sh test
	ctest --test-dir $(BUILD) --output-on-failure -j2

test-asan: deps
	@scripts/deps.sh test
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKZ_WERROR=ON \
	  -DKZ_SANITIZE=ON -DKZ_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j2

$(FUZZ_BUILD)/build.ninja: deps
	@cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKZ_WERROR=ON \
	  -DKZ_FUZZ=ON -DCMAKE_C_COMPILER=clang >/dev/null

test-fuzz: $(FUZZ_BUILD)/build.ninja
	@cmake -S . -B $(FUZZ_BUILD) -DKZ_FUZZ_SECONDS=15 >/dev/null
	@cmake --build $(FUZZ_BUILD)
	ctest --test-dir $(FUZZ_BUILD) --output-on-failure -j2

fuzz: $(FUZZ_BUILD)/build.ninja
	@cmake -S . -B $(FUZZ_BUILD) -DKZ_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	@cmake --build $(FUZZ_BUILD)
	ctest --test-dir $(FUZZ_BUILD) --output-on-failure -j2

# Micro-benchmarks of the core, then kaze echo against libwebsockets and
# Node ws (bench/compare.sh; ROUNDS=3 by default).
bench: build
	@scripts/deps.sh bench
	@scripts/bench.sh $(BUILD)

run: build
	$(BUILD)/apps/kaze echo --port $(PORT)

install: build
	cmake --install $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)
