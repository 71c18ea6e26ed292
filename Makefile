# attnsparse — the two set-up commands are `make run` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
MODEL ?=
CMAKE_FLAGS ?=

.PHONY: all setup configure build run test test-all bench clean

all: build

setup:
	bash scripts/setup.sh --with-browser

configure: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j$(JOBS)

# The main job on the bundled default (see README).
run: build
	bash scripts/run_default.sh $(BUILD)

# The fast suites (what CI runs).
test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 600

bench: build
	bash scripts/bench_all.sh $(BUILD)

clean:
	rm -rf $(BUILD)
