# mcpsonde -- one entry point: make, make test, make bench, make demo, make vmlinux.
# Quiet by default; V=1 shows the commands.

OUTPUT   := build
ARCH     ?= $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
VMLINUX  := vmlinux/$(ARCH)/vmlinux.h
CLANG    ?= clang
BPFTOOL  ?= bpftool
CC       ?= cc
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo unknown)

CFLAGS   ?= -O2 -g
CFLAGS   += -Wall -Wextra -Werror -std=gnu11 -D_GNU_SOURCE
CPPFLAGS += -Iinclude -I$(OUTPUT)
LDLIBS   += -lbpf -lelf -lz -ljansson -lmicrohttpd -lpthread -lm
LDLIBS   += -lhttp_parser -lresolv
BPF_CFLAGS := -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_$(ARCH) -I$(dir $(VMLINUX)) -Iinclude

BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_OBJS  := $(patsubst bpf/%.bpf.c,$(OUTPUT)/%.bpf.o,$(BPF_SRCS))
SKELS     := $(patsubst bpf/%.bpf.c,$(OUTPUT)/%.skel.h,$(BPF_SRCS))
SRCS      := $(wildcard src/*.c)
OBJS      := $(patsubst src/%.c,$(OUTPUT)/obj/%.o,$(SRCS))
LIB_OBJS  := $(filter-out $(OUTPUT)/obj/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(OUTPUT)/tests/%,$(UNIT_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(OUTPUT)/tools/%,$(TOOL_SRCS))

# libFuzzer targets under ASan and UBSan. Everything but the CLI is linked in (the BPF
# loader too: targets names it, though nothing a fuzzer feeds ever loads a program); each target runs FUZZ_SECONDS from its committed seeds (tests/fuzz/corpus/NAME,
# NAME without "fuzz_") into a working corpus under build/fuzz/corpus.
FUZZ_SECONDS ?= 10
FUZZ_CC      := clang
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
		-std=gnu11 -D_GNU_SOURCE -Wall -Wextra
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,$(OUTPUT)/fuzz/%,$(FUZZ_SRCS))
FUZZ_OBJS    := $(patsubst src/%.c,$(OUTPUT)/fuzz/obj/%.o,$(filter-out src/main.c,$(SRCS)))
FUZZ_LDLIBS  := $(LDLIBS)

ifeq ($(V),1)
	Q =
	msg =
else
	Q = @
	msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all test unit bench demo vmlinux setup clean fuzz image install FORCE

all: $(OUTPUT)/mcpsonde

$(OUTPUT) $(OUTPUT)/obj $(OUTPUT)/tests $(OUTPUT)/tools $(OUTPUT)/fuzz/obj:
	$(Q)mkdir -p $@

$(OUTPUT)/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.bpf.h) include/mcpsonde/events.h $(VMLINUX) | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# The bench's floor: the same programs built to return at once (tests/tools/floor.c).
$(OUTPUT)/floor.bpf.o: bpf/mcpsonde.bpf.c $(wildcard bpf/*.bpf.h) include/mcpsonde/events.h $(VMLINUX) | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -DMSD_HOOKS_ONLY -c $< -o $@

$(OUTPUT)/%.skel.h: $(OUTPUT)/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

# The version (git describe) lives in a generated header that is rewritten only when it
# changes, so that a new commit rebuilds what prints it and nothing runs with a stale one.
$(OUTPUT)/version.h: FORCE | $(OUTPUT)
	$(Q)printf '#define MCPSONDE_VERSION "%s"\n' "$(VERSION)" > $@.tmp
	$(Q)cmp -s $@.tmp $@ && rm -f $@.tmp || mv -f $@.tmp $@

$(OUTPUT)/obj/%.o: src/%.c $(wildcard include/mcpsonde/*.h) $(SKELS) $(OUTPUT)/version.h | $(OUTPUT)/obj
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(OUTPUT)/mcpsonde: $(OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(OUTPUT)/tests/%: tests/unit/%.c $(LIB_OBJS) | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $^ $(LDLIBS) -lcmocka -o $@

# Test and bench tools.
$(OUTPUT)/tools/floor: $(OUTPUT)/floor.skel.h
$(OUTPUT)/tools/%: tests/tools/%.c | $(OUTPUT)/tools
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $< $(LDLIBS) -o $@

# The e2e tests' view of attribution: linked with the module itself.
$(OUTPUT)/tools/attrib_probe: tests/tools/attrib_probe.c $(OUTPUT)/obj/attrib.o | $(OUTPUT)/tools
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $^ -ljansson -o $@

unit: $(UNIT_BINS)

$(OUTPUT)/fuzz/obj/%.o: src/%.c $(wildcard include/mcpsonde/*.h) $(SKELS) $(OUTPUT)/version.h | $(OUTPUT)/fuzz/obj
	$(call msg,FUZZ-CC,$@)
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(OUTPUT)/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJS) | $(OUTPUT)/fuzz/obj
	$(call msg,FUZZ-LD,$@)
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ $(FUZZ_LDLIBS) -o $@

# Builds every target, then runs each for FUZZ_SECONDS (a crash stops make, leaving its
# reproducer as crash-* in the current directory).
fuzz: $(FUZZ_BINS)
	$(Q)for bin in $(FUZZ_BINS); do \
		name=$${bin##*/}; seeds=tests/fuzz/corpus/$${name#fuzz_}; work=$(OUTPUT)/fuzz/corpus/$$name; \
		dict=tests/fuzz/$${name#fuzz_}.dict; mkdir -p $$work; \
		printf '  %-8s %s (%s s)\n' FUZZ $$name $(FUZZ_SECONDS); \
		$$bin -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 \
			$$( [ -f $$dict ] && echo -dict=$$dict ) $$work $$( [ -d $$seeds ] && echo $$seeds ) \
			> $(OUTPUT)/fuzz/$$name.log 2>&1 || { tail -40 $(OUTPUT)/fuzz/$$name.log; exit 1; }; \
		grep -E '^stat::number_of_executed_units' $(OUTPUT)/fuzz/$$name.log | sed 's/^/           /'; \
	done

# Installs what is missing (idempotent), builds, then runs every test. The container image
# is part of it (~8 s): the Kubernetes test runs the DaemonSet's pod from it.
test: setup
	$(Q)$(MAKE) --no-print-directory all unit $(TOOL_BINS) $(FUZZ_BINS) image
	$(Q)tests/run.sh

# The binary, the systemd unit (pointing at the installed binary), the Prometheus rules and
# the Grafana dashboard. PREFIX=/usr/local puts mcpsonde where `sudo mcpsonde` finds it.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
DATADIR ?= $(PREFIX)/share/mcpsonde

install: $(OUTPUT)/mcpsonde
	$(call msg,INSTALL,$(DESTDIR)$(BINDIR)/mcpsonde)
	$(Q)install -D -m 0755 $(OUTPUT)/mcpsonde $(DESTDIR)$(BINDIR)/mcpsonde
	$(Q)install -d -m 0755 $(DESTDIR)$(UNITDIR)
	$(Q)sed 's|@BINDIR@|$(BINDIR)|g' deploy/systemd/mcpsonde.service > $(DESTDIR)$(UNITDIR)/mcpsonde.service
	$(Q)chmod 0644 $(DESTDIR)$(UNITDIR)/mcpsonde.service
	$(Q)install -D -m 0644 deploy/prometheus/mcpsonde-rules.yml $(DESTDIR)$(DATADIR)/prometheus/mcpsonde-rules.yml
	$(Q)install -D -m 0644 deploy/grafana/mcpsonde.json $(DESTDIR)$(DATADIR)/grafana/mcpsonde.json

# build/image/mcpsonde-image.tar, offline, from this machine's Debian packages.
image: $(OUTPUT)/mcpsonde
	$(call msg,IMAGE,$(OUTPUT)/image/mcpsonde-image.tar)
	$(Q)scripts/build-image.sh >/dev/null

setup:
	$(Q)scripts/setup.sh

demo: setup
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/demo.sh

bench: setup
	$(Q)$(MAKE) --no-print-directory all $(TOOL_BINS)
	$(Q)scripts/bench.sh

vmlinux:
	$(call msg,GEN,$(VMLINUX))
	$(Q)mkdir -p $(dir $(VMLINUX))
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $(VMLINUX)

clean:
	$(call msg,CLEAN,$(OUTPUT))
	$(Q)rm -rf $(OUTPUT)

