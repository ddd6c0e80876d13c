# seams: build, deps, tests and demo.  `make V=1` shows full commands.
BUILD    ?= build
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
ARCH     := x86
# `make install`: PREFIX for the binary and man page, DESTDIR for staging
# (packages).  The unit goes to /etc/systemd/system, where systemd looks
# whatever the prefix; its ExecStart names /usr/local/bin/seams, so
# another PREFIX rewrites that line.
PREFIX   ?= /usr/local
DESTDIR  ?=
UNITDIR  ?= /etc/systemd/system

ifeq ($(V),1)
Q :=
else
Q := @
endif

WARN     := -Wall -Wextra -Werror -Wmissing-field-initializers -Wno-unused-parameter
CFLAGS   ?= -O2 -g
# A bare hash of digits only would read as a number: git's own g prefix then.
VERSION  := $(shell (git describe --always --dirty 2>/dev/null || echo dev) | sed 's/^[0-9]*$$/g&/')
CFLAGS   += $(WARN) -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuser -I$(BUILD) -DSEAMS_VERSION='"$(VERSION)"'
LDLIBS   := -lbpf -lelf -lz -ljansson -lpg_query -lgvc -lcgraph -lmicrohttpd -lm -lpthread

# Debian packages seams builds, tests and demos with.  `make deps` installs
# whatever is missing; test and demo run it first.
DEB_PKGS := clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool \
            libpg-query-dev libprotobuf-c-dev libjansson-dev \
            libgraphviz-dev graphviz libmicrohttpd-dev libcmocka-dev libclang-rt-14-dev \
            postgresql-15 postgresql-contrib libpq-dev python3 python3-psycopg2 curl iproute2 jq socat \
            chromium prometheus openssl nodejs
# What only `make bench` uses: tshark, which pg_cpu_per_tx.sh compares
# seams with, and perf, which bpf_lines.sh samples with.
BENCH_PKGS := tshark linux-perf

BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_OBJS  := $(patsubst bpf/%.bpf.c,$(BUILD)/%.bpf.o,$(BPF_SRCS))
SKELS     := $(patsubst bpf/%.bpf.c,$(BUILD)/%.skel.h,$(BPF_SRCS))
USER_SRCS := $(wildcard user/*.c)
USER_OBJS := $(patsubst user/%.c,$(BUILD)/obj/%.o,$(USER_SRCS))
# Everything but main(): unit tests link against this.
LIB_OBJS  := $(filter-out $(BUILD)/obj/main.o,$(USER_OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
BENCH_SRCS := $(wildcard tests/bench/bench_*.c)
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
# Pure sources the fuzzers exercise (no libbpf, no skeleton).
FUZZ_LIB  := user/pgwire.c user/sqltables.c

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all deps test unit fuzz demo bench clean vmlinux install node-pg

all: $(BUILD)/seams

$(BUILD)/seams: $(USER_OBJS)
	@echo "  LINK    $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.bpf.h) $(wildcard include/*.h) vmlinux/vmlinux.h | $(BUILD)
	@echo "  BPF     $@"
	$(Q)$(CLANG) -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_$(ARCH) \
		-Iinclude -Ivmlinux -c $< -o $@

$(BUILD)/%.skel.h: $(BUILD)/%.bpf.o
	@echo "  SKEL    $@"
	$(Q)$(BPFTOOL) gen skeleton $< > $@

$(BUILD)/obj/%.o: user/%.c $(wildcard user/*.h) $(wildcard include/*.h) $(SKELS) | $(BUILD)/obj
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS) | $(BUILD)/tests
	@echo "  TEST    $@"
	$(Q)$(CC) $(CFLAGS) -Wno-unused-function -o $@ $< $(LIB_OBJS) $(LDLIBS) -lcmocka

$(BUILD)/bench/%: tests/bench/%.c $(LIB_OBJS) | $(BUILD)/bench
	@echo "  BENCH   $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB) $(wildcard user/*.h) | $(BUILD)/fuzz
	@echo "  FUZZ    $@"
	$(Q)$(CLANG) -g -O1 -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuser \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-o $@ $< $(FUZZ_LIB) -ljansson -lpg_query

$(BUILD) $(BUILD)/obj $(BUILD)/tests $(BUILD)/fuzz $(BUILD)/bench:
	$(Q)mkdir -p $@

deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "  DEPS    installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || \
		{ echo "make deps: apt-get install failed; run as root with Debian's package lists reachable" >&2; exit 1; }; \
	fi

unit: $(UNIT_BINS)
fuzz: $(FUZZ_BINS)

test: deps
	$(Q)$(MAKE) --no-print-directory all unit fuzz node-pg
	$(Q)tests/run.sh

# node-postgres for tests/e2e/test_pg_tls_node.sh, installed once from npm.
# Debian's nodejs comes without npm, NodeSource's with it (and conflicts with
# Debian's npm package): npm is installed only when missing.  Without it the
# test skips.
NODE_PG := $(BUILD)/node/node_modules/pg/package.json
node-pg: $(NODE_PG)
$(NODE_PG):
	$(Q)command -v npm >/dev/null 2>&1 || apt-get install -y -q npm >/dev/null 2>&1 || \
		{ echo "  NODE    npm not available: test_pg_tls_node will skip"; exit 0; }; \
	mkdir -p $(BUILD)/node && \
	npm install --prefix $(BUILD)/node --no-audit --no-fund --silent pg@8 || \
		echo "  NODE    npm install pg failed: test_pg_tls_node will skip"

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tests/demo/run.sh

bench: deps all $(BENCH_BINS)
	$(Q)$(MAKE) --no-print-directory deps DEB_PKGS="$(BENCH_PKGS)"
	$(Q)tests/bench/run.sh

install: $(BUILD)/seams
	@echo "  INSTALL $(DESTDIR)$(PREFIX)/bin/seams"
	$(Q)install -D -m 0755 $(BUILD)/seams $(DESTDIR)$(PREFIX)/bin/seams
	$(Q)install -D -m 0644 docs/seams.1 $(DESTDIR)$(PREFIX)/share/man/man1/seams.1
	$(Q)install -d $(DESTDIR)$(UNITDIR)
	$(Q)sed 's|/usr/local/bin/seams|$(PREFIX)/bin/seams|' dist/seams-agent.service \
		> $(DESTDIR)$(UNITDIR)/seams-agent.service
	$(Q)chmod 0644 $(DESTDIR)$(UNITDIR)/seams-agent.service

# Regenerate the committed CO-RE header from the running kernel.
vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/vmlinux.h

clean:
	rm -rf $(BUILD)
