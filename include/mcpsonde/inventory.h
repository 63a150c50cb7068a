/* inventory.h -- every MCP server process seen on this machine, running or gone.
 *
 * One record per server process: a process that spoke MCP on its stdio and was announced
 * (EV_SESSION); wrappers (npm exec, sh) and relays never are. A record is keyed by (pid,
 * start time) and holds: the boot it ran in, how it was found (attached or discovered), comm,
 * exe, command line, program, server name and version, protocol version, its client (the
 * clientInfo it gave, and the client process at the other end of its stdin), the relay in
 * between, first and last seen, its tools (count, and a digest of the last tools/list),
 * calls and errors, and how it exited. Fed by the pipeline's events (sink_inventory_new),
 * read by the metrics sink (gauges, GET /servers) and by `mcpsonde servers`.
 *
 * Persistence: with a state directory, DIR/servers.json is rewritten atomically (a
 * temporary file in DIR, fsync, rename), mode 0600, at most once per INVENTORY_SAVE_NS when
 * something changed, and when mcpsonde stops; it is read back at start, so the inventory
 * survives restarts. A record left running by an earlier run whose process is gone (or from
 * another boot) is marked exited, exit unknown; one still running is taken up again when it
 * next speaks. The file is untrusted: its size is bounded (INVENTORY_FILE_MAX), only known
 * members of the expected types are kept, and a file that is not an inventory is refused
 * with a one-line error (watch then starts with an empty inventory and says so; the bad
 * file is kept aside as servers.json.bad).
 *
 * Bounds: at most max_records. A new record evicts the exited record last seen the longest
 * ago; when every record is a running server the new one is not kept. Both are counted
 * (evicted, refused) and persisted. Single-threaded (the pipeline's). */
#ifndef MCPSONDE_INVENTORY_H
#define MCPSONDE_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "attrib.h"
#include "sink.h"

#define INVENTORY_MAX_DEFAULT 1000
#define INVENTORY_SAVE_NS (2ull * 1000000000ull)
#define INVENTORY_FILE_MAX (32u << 20)
#define INVENTORY_FILE "servers.json"

struct inventory_opts {
	const char *state_dir;  /* NULL: kept in memory only */
	unsigned max_records;   /* 0: INVENTORY_MAX_DEFAULT */
	bool live;              /* the servers run here: /proc and the boot id are this machine's */
};

struct inventory_counts {
	unsigned running, exited;
	uint64_t evicted, refused;
};

/* What the metrics sink labels a running server's info series with. */
struct inventory_view {
	uint32_t pid;
	uint64_t start_ticks;
	const char *server, *server_version, *protocol_version, *client_name, *found;
	struct attrib_attr resource[ATTRIB_ATTRS_MAX]; /* its "resource" member: none on the host */
	size_t nresource;
};

struct inventory;

/* Opens the inventory, reading DIR/servers.json when there is one. NULL with a one-line
 * reason in err when the directory cannot be made or the file is not an inventory. */
struct inventory *inventory_open(const struct inventory_opts *opts, char *err, size_t errlen);
/* Saves (when there is a state directory and something changed) and frees. */
void inventory_close(struct inventory *inv);
/* The sink that keeps it up to date; close the sink before the inventory. */
struct sink *sink_inventory_new(struct inventory *inv);
void inventory_counts(const struct inventory *inv, struct inventory_counts *out);
void inventory_each_running(const struct inventory *inv, void (*fn)(void *ctx, const struct inventory_view *v),
			    void *ctx);
/* The inventory as one JSON document (what /servers serves and servers.json holds),
 * malloc'd, *len set; NULL when out of memory. */
char *inventory_render(const struct inventory *inv, size_t *len);
/* `mcpsonde servers`: the inventory in DIR, as a table or (json) its document. 0, or -1 with
 * a one-line reason in err. */
int inventory_print(const char *state_dir, bool json, FILE *out, char *err, size_t errlen);

#endif
