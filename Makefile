# Sluice: non-recursive build. `make` builds into build/ with binaries in build/bin/.
# `make help` lists the targets.

BUILD   ?= build
V       ?= 0
Q       := $(if $(filter 1,$(V)),,@)
CC      ?= cc
PYTHON  ?= python3

PKGS      := libevent_core libevent_extra libevent_pthreads libevent_openssl openssl libpcre2-8 jansson \
             yaml-0.1 lmdb libprotobuf-c libzstd hiredis msgpack libnghttp2
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
           -Wimplicit-fallthrough -Wvla -Wno-unused-parameter
OPT     ?= -O2 -g
CFLAGS  ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(if $(CI),-Werror,) -fno-strict-aliasing \
           -I. -Icommon -Idataplane -Icontrolplane -Ipluginserver-bridge -I$(BUILD)/gen \
           $(PKG_CFLAGS) $(SAN)
LDFLAGS += $(SAN)
LDLIBS  := $(PKG_LIBS) -lpthread -lm

COMMON_SRC := $(sort $(wildcard common/*.c))
DP_SRC     := $(filter-out dataplane/main.c,$(sort $(wildcard dataplane/*.c))) \
              $(sort $(wildcard pluginserver-bridge/*.c))
# Native plugins are linked as objects, not from the archive: the registry
# refers to them weakly, so nothing would pull them out of a library.
PLUGIN_SRC := $(sort $(wildcard dataplane/plugins/*.c))
CP_SRC     := $(filter-out controlplane/main.c,$(sort $(wildcard controlplane/*.c)))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC   := $(sort $(wildcard tests/fuzz/fuzz_*.c))

# proto/*.proto -> $(BUILD)/gen/<name>.pb-c.{c,h} (protoc-c), linked into libslcommon.
PROTO_SRC  := $(sort $(wildcard proto/*.proto))
PROTO_GEN_C := $(PROTO_SRC:proto/%.proto=$(BUILD)/gen/%.pb-c.c)
PROTO_GEN_H := $(PROTO_GEN_C:.c=.h)
PROTO_OBJ  := $(PROTO_GEN_C:$(BUILD)/gen/%.c=$(BUILD)/obj/gen/%.o)

COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o) $(PROTO_OBJ)
DP_OBJ     := $(DP_SRC:%.c=$(BUILD)/obj/%.o)
PLUGIN_OBJ := $(PLUGIN_SRC:%.c=$(BUILD)/obj/%.o)
CP_OBJ     := $(CP_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_BIN   := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)

LIB_COMMON := $(BUILD)/lib/libslcommon.a
LIB_DP     := $(BUILD)/lib/libsldp.a
LIB_CP     := $(BUILD)/lib/libslcp.a
SLUICE_DP  := $(BUILD)/bin/sluice-dp
SLUICE_CP  := $(if $(wildcard controlplane/main.c),$(BUILD)/bin/sluice-cp,)

# go-pdk-examples/: example plugin servers built with Kong's go-pdk, one per directory.
# Modules come only from what `make deps` downloaded (-mod=readonly).
GO          ?= go
GO_EXAMPLES := $(patsubst go-pdk-examples/%/main.go,%,$(sort $(wildcard go-pdk-examples/*/main.go)))
GO_ENV      := GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

.PHONY: all help deps test unit integration asan bench bench-sync run format format-check clean check-tools fuzz-smoke \
        go-examples go-test
all: $(SLUICE_DP) $(SLUICE_CP) go-examples

help:
	@echo "make            build everything into $(BUILD)/ (binaries in $(BUILD)/bin/)"
	@echo "make deps       install the Debian and Python packages and the Go modules the build and tests need"
	@echo "make test       C unit tests (cmocka), integration tests (pytest) and go-test"
	@echo "make go-examples the go-pdk example plugins into $(BUILD)/bin/go-plugins/"
	@echo "make go-test    go vet and go test in go-pdk-examples/"
	@echo "make asan       both suites under AddressSanitizer + UBSan"
	@echo "make bench      benchmarks against the upstream directly and nginx"
	@echo "make bench-sync hybrid mode: propagation from the Admin API to five data planes"
	@echo "make run        a local demo"
	@echo "make format-check / make format"

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto $(PROTO_SRC)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  PROTOC  $<")
	$(Q)protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

.SECONDARY: $(PROTO_GEN_C) $(PROTO_GEN_H)

# Generated code is not ours to lint: compile it without the extra warnings.
$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c $(PROTO_GEN_H)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) -std=c11 $(OPT) -I$(BUILD)/gen $(PKG_CFLAGS) $(SAN) -c $< -o $@

$(BUILD)/obj/%.o: %.c | $(PROTO_GEN_H)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB_COMMON): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIB_DP): $(DP_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIB_CP): $(CP_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/sluice-cp: $(BUILD)/obj/controlplane/main.o $(LIB_CP) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(SLUICE_DP): $(BUILD)/obj/dataplane/main.o $(PLUGIN_OBJ) $(LIB_DP) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# sluice-dp with the benchmark's native twin of the Go hello plugin.
$(BUILD)/bin/sluice-dp-bench: $(BUILD)/obj/dataplane/main.o $(BUILD)/obj/tests/bench/hello_native.o \
		$(PLUGIN_OBJ) $(LIB_DP) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(PLUGIN_OBJ) $(LIB_DP) $(LIB_CP) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(shell pkg-config --cflags cmocka) -MMD -MP -o $@ $< $(PLUGIN_OBJ) $(LIB_DP) $(LIB_CP) $(LIB_COMMON) \
	    $(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs cmocka)

# Fuzz targets are libFuzzer-style; with gcc they are linked to a replay driver
# that runs every file of their corpus (tests/fuzz/corpus/<target>/).
$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/replay_main.c $(PLUGIN_OBJ) $(LIB_DP) $(LIB_COMMON)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -o $@ $< tests/fuzz/replay_main.c $(PLUGIN_OBJ) $(LIB_DP) $(LIB_COMMON) \
	    $(LDFLAGS) $(LDLIBS)

fuzz-smoke: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do n=$$(basename $$f); n=$${n#fuzz_}; \
	    echo "== $$f tests/fuzz/corpus/$$n"; $$f tests/fuzz/corpus/$$n; done

check-tools:
	@tools/check-tools.sh

# Static binaries, named like their plugins; go caches its own work, so this always runs.
go-examples:
	@command -v $(GO) >/dev/null 2>&1 || { echo "go-examples: '$(GO)' not found: install Go 1.21 or later" >&2; exit 1; }
	@mkdir -p $(BUILD)/bin/go-plugins
	@$(if $(Q),echo "  GO      $(BUILD)/bin/go-plugins/{$(GO_EXAMPLES)}")
	$(Q)cd go-pdk-examples && $(GO_ENV) $(GO) build -trimpath -o $(abspath $(BUILD))/bin/go-plugins/ \
	    $(GO_EXAMPLES:%=./%)

go-test: check-tools
	cd go-pdk-examples && $(GO_ENV) $(GO) vet ./... && $(GO_ENV) $(GO) test ./...

unit: check-tools $(UNIT_BIN)
	@set -e; fail=0; for t in $(UNIT_BIN); do \
	    echo "== $$t"; $$t || fail=1; done; \
	    if [ $$fail -ne 0 ]; then echo "unit tests FAILED"; exit 1; fi

integration: check-tools all
	SLUICE_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)

test: unit fuzz-smoke integration go-test

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 test

bench: all $(BUILD)/bin/sluice-dp-bench
	SLUICE_BUILD=$(abspath $(BUILD)) tests/bench/run.sh

bench-sync: all
	$(PYTHON) tests/bench/sync_bench.py --build $(abspath $(BUILD))/bin

run:
	tools/deps.sh
	$(MAKE) all
	tools/demo.sh $(abspath $(BUILD))

deps:
	tools/deps.sh

FORMAT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRC)

format-check:
	@clang-format --dry-run -Werror $(FORMAT_SRC) && echo "format ok"

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
