# The two commands a newcomer needs: `make test` and `make demo`. Each installs the Debian
# packages sluice builds with (scripts/install-deps.sh, a no-op when they are present),
# configures the release preset and builds.

PRESET ?= release
BUILD_DIR := build/$(PRESET)

.PHONY: all deps configure build test demo bench pgo sanitize clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake --preset $(PRESET) >/dev/null

build: configure
	@cmake --build --preset $(PRESET)

test: build
	@ctest --preset $(PRESET)

demo: build
	@bash scripts/demo.sh $(BUILD_DIR)

bench: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release --target ring_buffer_bench journal_bench network_bench
	@bash perf/run_bench.sh build/release
	@bash perf/run_journal_bench.sh build/release
	@bash perf/run_network_bench.sh build/release

# A profile-guided build in build/pgo, trained on the demo (scripts/build-pgo.sh).
pgo: deps
	@bash scripts/build-pgo.sh

# The sanitizer runs CI does: ASan+UBSan on everything, TSan on the concurrency suites.
sanitize: deps
	@cmake --preset asan >/dev/null && cmake --build --preset asan && ctest --preset asan
	@cmake --preset tsan >/dev/null && cmake --build --preset tsan && ctest --preset tsan

clean:
	rm -rf build
