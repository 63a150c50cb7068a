/* fuzz_pipeline.c -- hostile traffic through the whole user-space pipeline.
 *
 * The input is cut into records: each starts with a control byte (stream: client->server,
 * server->client or stderr; whether to jump the offset, announce a cut or lost tail, exit)
 * and a length byte, followed by that many payload bytes. Seeds that look like JSON-RPC help
 * the fuzzer reach the session's correlation code. Events are rendered to JSON (as the JSONL
 * sink would), checked to parse back, and dropped. A small max_frame makes oversized frames common.
 *
 * Seed (tests/fuzz/corpus/pipeline): initialize, tools/list, a call, stderr, a request left
 * pending, then an exit by SIGSEGV.
 *
 *   make fuzz FUZZ_SECONDS=60            (all targets)
 *   build/fuzz/fuzz_pipeline -max_len=8192 build/fuzz/corpus/fuzz_pipeline tests/fuzz/corpus/pipeline
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcpsonde/pipeline.h"

#include "fuzz_render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sink render = { .on_event = fuzz_render_on_event };
	struct sink_list sinks = { 0 };
	uint64_t off[3] = { 0 }, ts = 1000;
	struct pipeline_opts o;
	struct pipeline *p;
	size_t i = 0;

	pipeline_opts_default(&o);
	o.max_frame = 4096;
	o.stall_ns = 1000000;
	sinks_add(&sinks, &render);
	p = pipeline_new(&o, &sinks);
	while (i + 2 <= size) {
		uint8_t ctl = data[i], len = data[i + 1];
		unsigned stream = ctl % 3;
		struct msd_data_rec *d;

		i += 2;
		if (len > size - i)
			len = (uint8_t)(size - i);
		ts += 1000 * (ctl >> 6);
		if ((ctl & 0x3c) == 0x3c) { /* a rare exit, with whatever status */
			struct msd_exit_rec x = { .hdr = { .kind = MSD_REC_EXIT, .abi = MSD_ABI_VERSION,
							   .size = sizeof(x), .ts_ns = ts, .tgid = 7, .tid = 7 } };
			x.exit_code = len;
			pipeline_feed(p, &x.hdr);
			memset(off, 0, sizeof(off));
			continue;
		}
		d = calloc(1, sizeof(*d) + len);
		d->hdr = (struct msd_rec_hdr){ .kind = MSD_REC_DATA, .abi = MSD_ABI_VERSION,
					       .size = (uint32_t)(sizeof(*d) + len), .ts_ns = ts, .tgid = 7, .tid = 7 };
		d->fd = stream == 0 ? 0 : stream == 1 ? 1 : 2;
		d->dir = stream == 0 ? MSD_DIR_READ : MSD_DIR_WRITE;
		d->role = stream == 0 ? MSD_ROLE_IN : stream == 1 ? MSD_ROLE_OUT : MSD_ROLE_ERR;
		d->file_ino = 100 + stream;
		d->fd_kind = MSD_FD_PIPE;
		d->flags = MSD_DATA_LAST | ((ctl & 0x08) ? MSD_DATA_TRUNCATED : 0) | ((ctl & 0x10) ? MSD_DATA_SHORT : 0);
		if (ctl & 0x20) /* lost bytes before this record */
			off[stream] += len + 1;
		d->stream_off = off[stream];
		d->syscall_len = (d->flags & MSD_DATA_TRUNCATED) ? (uint64_t)len + 7 : len;
		if (d->flags & MSD_DATA_TRUNCATED) { /* 7 bytes after the copied ones: cut, or lost */
			d->flags |= (len & 1) ? MSD_DATA_CUT : 0;
			d->hole_off = off[stream] + len;
			d->hole_len = 7;
		}
		d->requested = d->syscall_len + ((ctl & 0x10) ? 100 : 0);
		d->cap_len = len;
		memcpy(d->data, data + i, len);
		pipeline_feed(p, &d->hdr);
		off[stream] += d->syscall_len;
		free(d);
		i += len;
		pipeline_tick(p, ts);
	}
	pipeline_finish(p, ts + 1000000000ull);
	pipeline_free(p);
	return 0;
}
