/* fuzz_conns.c -- hostile connections through the HTTP transport stage and the pipeline.
 *
 * fuzz_http drives the decoder alone; this drives what sits around it: connections of one
 * process opened, shut down, closed and reused (conns.c), their streams reassembled with
 * gaps and cuts (stream.c), payloads correlated in the process's session with their scope
 * and side (session.c), exchanges settled, the process exiting with connections open.
 *
 * The input is cut into records: a control byte and a length byte, then that many payload
 * bytes for data. The control byte: bits 0-1 the connection (four at once), bit 2 the
 * direction (read, write), bits 3-5 what it is (0-3 data; 4 data after lost bytes; 5 data
 * whose syscall was longer than its copy: a cut or a loss after it; 6 a lifecycle record,
 * or an exit, chosen by the length byte, which then carries no payload; 7 a read of 0 bytes,
 * the peer's end), bits 6-7 time passing. Events are rendered to JSON (fuzz_render.h),
 * checked to parse back, and dropped.
 *
 * Seeds (tests/fuzz/corpus/conns): a server answering a POST over SSE and a 202, and the same
 * process as a client of another server.
 *
 *   make fuzz FUZZ_SECONDS=60            (all targets)
 *   build/fuzz/fuzz_conns -max_len=8192 -dict=tests/fuzz/conns.dict build/fuzz/corpus/fuzz_conns tests/fuzz/corpus/conns
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mcpsonde/pipeline.h"

#include "fuzz_render.h"

#define TGID 7
#define CONNS 4

struct fconn {
	uint64_t conn_id; /* a new one when the slot is reused after a close, as the kernel does */
	uint64_t off[2];
};

static void ignore(void *ctx, uint32_t tgid, uint32_t dev, uint64_t ino, uint64_t conn_id)
{
	(void)ctx, (void)tgid, (void)dev, (void)ino, (void)conn_id;
}

static void lifecycle(struct pipeline *p, struct fconn *c, unsigned slot, uint8_t what, uint64_t ts)
{
	static const uint8_t events[] = { MSD_CONN_ACCEPT, MSD_CONN_CONNECT, MSD_CONN_SEEN, MSD_CONN_SHUTDOWN,
					  MSD_CONN_CLOSE };
	struct msd_conn_rec r = { .hdr = { .kind = MSD_REC_CONN, .abi = MSD_ABI_VERSION, .size = sizeof(r),
					   .ts_ns = ts, .tgid = TGID, .tid = TGID } };
	bool server;

	r.conn_id = c->conn_id;
	r.file_ino = 7000 + slot;
	r.file_dev = 9;
	r.fd = 20 + (int)slot;
	r.event = events[what % 5];
	r.how = what / 5 % 3;
	r.family = (what & 0x40) ? AF_UNIX : (what & 0x20) ? AF_INET6 : AF_INET;
	server = r.event != MSD_CONN_CONNECT;
	r.local_port = server ? 3001 : (uint16_t)(40000 + slot);
	r.peer_port = server ? (uint16_t)(40000 + slot) : 3001;
	r.local_addr[0] = r.peer_addr[0] = 127;
	r.local_addr[3] = r.peer_addr[3] = 1;
	memcpy(r.path, "/run/mcp.sock", 14);
	pipeline_feed(p, &r.hdr);
	if (r.event == MSD_CONN_CLOSE) {
		c->conn_id += CONNS;
		c->off[0] = c->off[1] = 0;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sink render = { .on_event = fuzz_render_on_event };
	struct sink_list sinks = { 0 };
	struct fconn conns[CONNS];
	uint64_t ts = 1000;
	struct pipeline_opts o;
	struct pipeline *p;
	size_t i = 0;

	for (unsigned k = 0; k < CONNS; k++)
		conns[k] = (struct fconn){ .conn_id = k + 1 };
	pipeline_opts_default(&o);
	o.max_frame = 4096;
	o.stall_ns = 1000000;
	sinks_add(&sinks, &render);
	p = pipeline_new(&o, &sinks);
	pipeline_set_conn_ignore(p, ignore, NULL);
	while (i + 2 <= size) {
		uint8_t ctl = data[i], len = data[i + 1], kind = (ctl >> 3) & 7;
		unsigned slot = ctl & 3, dir = (ctl >> 2) & 1;
		struct fconn *c = &conns[slot];
		struct msd_data_rec *d;

		i += 2;
		ts += 1000000 * (ctl >> 6);
		if (kind == 6) {
			if (len == 0xff) { /* the process exits, connections open */
				struct msd_exit_rec x = { .hdr = { .kind = MSD_REC_EXIT, .abi = MSD_ABI_VERSION,
								   .size = sizeof(x), .ts_ns = ts, .tgid = TGID, .tid = TGID } };
				pipeline_feed(p, &x.hdr);
				for (unsigned k = 0; k < CONNS; k++)
					conns[k].conn_id += CONNS, conns[k].off[0] = conns[k].off[1] = 0;
			} else {
				lifecycle(p, c, slot, len, ts);
			}
			pipeline_tick(p, ts);
			continue;
		}
		if (kind == 7)
			len = 0;
		if (len > size - i)
			len = (uint8_t)(size - i);
		d = calloc(1, sizeof(*d) + len);
		d->hdr = (struct msd_rec_hdr){ .kind = MSD_REC_DATA, .abi = MSD_ABI_VERSION,
					       .size = (uint32_t)(sizeof(*d) + len), .ts_ns = ts, .tgid = TGID, .tid = TGID };
		d->fd = 20 + (int)slot;
		d->dir = (uint8_t)dir;
		d->role = MSD_ROLE_CONN;
		d->fd_kind = MSD_FD_SOCKET;
		d->family = AF_INET;
		d->file_ino = 7000 + slot;
		d->file_dev = 9;
		d->conn_id = c->conn_id;
		d->flags = MSD_DATA_LAST;
		if (kind == 4) /* records lost before this one */
			c->off[dir] += len + 1;
		d->stream_off = c->off[dir];
		d->syscall_len = len;
		if (kind == 5) { /* 9 bytes after the copied ones: cut, or lost */
			d->syscall_len += 9;
			d->flags |= MSD_DATA_TRUNCATED | ((len & 1) ? MSD_DATA_CUT : 0);
			d->hole_off = c->off[dir] + len;
			d->hole_len = 9;
		}
		d->requested = d->syscall_len;
		d->cap_len = len;
		memcpy(d->data, data + i, len);
		pipeline_feed(p, &d->hdr);
		c->off[dir] += d->syscall_len;
		free(d);
		i += len;
		pipeline_tick(p, ts);
	}
	pipeline_finish(p, ts + 1000000000ull);
	pipeline_free(p);
	return 0;
}
