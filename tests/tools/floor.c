/* floor.c -- what mcpsonde's hooks cost before its programs do anything: the bench's floor.
 *
 * Loads mcpsonde's own BPF programs built with MSD_HOOKS_ONLY (build/floor.bpf.o, from
 * bpf/mcpsonde.bpf.c), so every one of them returns at its first instruction, and attaches
 * them to the very same tracepoints. Nothing is tracked, nothing is copied. Every process on the machine then
 * pays what enabling those tracepoints costs, and that alone: scripts/bench.sh runs this as
 * its "floor" condition beside "untracked" (mcpsonde attached to an idle process), so that the
 * table shows the kernel's own tracepoint cost beside mcpsonde's.
 *
 *   sudo build/tools/floor        # "floor: attached" on stderr; detaches on SIGINT/SIGTERM
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "floor.skel.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

int main(void)
{
	struct floor_bpf *skel;
	int err;

	libbpf_set_print(quiet);
	skel = floor_bpf__open();
	if (!skel) {
		fprintf(stderr, "floor: cannot open the BPF object: %s\n", strerror(errno));
		return 1;
	}
	bpf_map__set_max_entries(skel->maps.events, 4096 * 16);
	/* Not a syscall hook: it fires on OOM kills only, and older kernels cannot load it. */
	bpf_program__set_autoload(skel->progs.mark_victim, false);
	err = floor_bpf__load(skel);
	if (!err)
		err = floor_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "floor: cannot load or attach the BPF programs: %s\n", strerror(-err));
		floor_bpf__destroy(skel);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	fprintf(stderr, "floor: attached\n");
	while (!stop)
		pause();
	floor_bpf__destroy(skel);
	return 0;
}
