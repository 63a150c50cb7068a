/* record.h -- the one check a record passes before any of its fields is used.
 *
 * Records reach the pipeline from the kernel, from user space (/proc identity, loss
 * counters) and from capture files, which anyone can craft. record_check() says whether a
 * record is well-formed: hdr.size covers its kind's fixed part, every length field (cap_len,
 * cmdline_len) lies within hdr.size, every fixed-size string is NUL-terminated within its
 * array, and the fields used as indexes or in offset arithmetic hold values that cannot
 * overflow (dir, role, loss reason, stream_off, syscall_len, hole_off, hole_len). A record that passes may be read
 * without further bounds checks, provided hdr.size bytes of it are in memory: the caller
 * guarantees that (the ring buffer's record length, the bytes the capture reader read).
 * Every record kind of events.h has its entry here; an unknown kind is refused. */
#ifndef MCPSONDE_RECORD_H
#define MCPSONDE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "events.h"

/* 0 when well-formed; -1 and a reason in why ("process identity record: cmdline_len 9000
 * exceeds the record's 296 bytes") otherwise. why may be NULL. */
int record_check(const struct msd_rec_hdr *rec, char *why, size_t whylen);
/* "data", "process identity"...; "unknown" for a kind events.h does not define. */
const char *record_kind_name(unsigned kind);

#endif
