/* hdrscrub.h -- secret HTTP header values blanked in connection records, before they are
 * stored or decoded.
 *
 * The values of Authorization, Proxy-Authorization, Cookie, Set-Cookie and of every header
 * whose name contains "token", "key" or "secret" (http_header_secret) must never be stored,
 * whatever the options: not in events (http.c never copies them) and not in capture files,
 * which hold records as the kernel copied them. Every record goes through here on its way to
 * the capture writer and the pipeline; in the bytes of a connection, each such header value
 * is overwritten in place with 'x', same length, so offsets, framing and lengths stay what
 * they were.
 *
 * How a value is found: per (process, connection, direction), in stream order, a line that
 * starts with a header name and a colon is a header line (request and status lines, bodies
 * and SSE lines do not match, or match harmlessly: a body line "token: x" is blanked too).
 * The value runs to the end of the line, and on over folded lines that start with a space or
 * a tab.
 *
 * Where the position in the stream is not known -- a connection first seen mid-stream, after
 * lost or cut bytes, a record out of order -- the first partial line may be the rest of a
 * secret value. It is blanked unless it shows it is not one: it holds "HTTP/1." (a request
 * or status line follows a body on it), it ends with a bare "\n" (header lines end with
 * CRLF), or it runs on past HDRSCRUB_LINE_MAX bytes (no server takes a header line that
 * long). While that is not decided yet at the end of a record, the record's part of it is
 * blanked: a few bytes of a message the decoder cannot follow anyway, never a secret.
 *
 * Invariants:
 * - Only connection data records change, and only by bytes becoming 'x'. A record with
 *   nothing to blank is passed on as it is (no copy).
 * - Memory is bounded: HDRSCRUB_STREAMS_MAX streams, the oldest forgotten first (the next
 *   record of a forgotten stream is a position not known: blanked as above, never leaked).
 */
#ifndef MCPSONDE_HDRSCRUB_H
#define MCPSONDE_HDRSCRUB_H

#include <stdint.h>

#include "events.h"

#define HDRSCRUB_STREAMS_MAX 65536
#define HDRSCRUB_LINE_MAX (16 * 1024) /* Node's whole request head limit; nginx's is 8 KiB */

struct hdrscrub;

struct hdrscrub_stats {
	uint64_t values;   /* secret header values (or parts of one) blanked */
	uint64_t bytes;    /* bytes blanked, values and uncertain lines */
	uint64_t unsure;   /* positions not known: a line start had to be guessed */
	uint64_t forgotten;/* streams forgotten for room */
};

struct hdrscrub *hdrscrub_new(void);
/* rec itself, or (when something had to be blanked) a scrubbed copy that stays valid until
 * the next call; NULL when there was no memory for the copy: the record must be dropped (it
 * is then a gap in its stream). Lifecycle records set up and end the connections' streams. */
const struct msd_rec_hdr *hdrscrub_record(struct hdrscrub *h, const struct msd_rec_hdr *rec);
void hdrscrub_stats(const struct hdrscrub *h, struct hdrscrub_stats *out);
void hdrscrub_free(struct hdrscrub *h);

#endif
