/* record.c -- record_check(): well-formedness of a record, before any field is used.
 *
 * One table gives each kind its name and the size of its fixed part; the per-kind checks
 * then bound what the fixed part says about the rest. Strings are checked for a NUL within
 * their arrays, so consumers may strdup() them; cmdline[] is NUL-separated and need not end
 * with one (consumers copy cmdline_len bytes). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mcpsonde/record.h"

static const struct {
	unsigned kind;
	const char *name;
	size_t min_size;
} record_kinds[] = {
	{ MSD_REC_DATA, "data", sizeof(struct msd_data_rec) },
	{ MSD_REC_FORK, "fork", sizeof(struct msd_fork_rec) },
	{ MSD_REC_EXEC, "exec", sizeof(struct msd_exec_rec) },
	{ MSD_REC_EXIT, "exit", sizeof(struct msd_exit_rec) },
	{ MSD_REC_OOM, "oom", sizeof(struct msd_oom_rec) },
	{ MSD_REC_DISCOVER, "discover", sizeof(struct msd_discover_rec) },
	{ MSD_REC_PROC, "process identity", sizeof(struct msd_proc_rec) },
	{ MSD_REC_LOSS, "loss", sizeof(struct msd_loss_rec) },
	{ MSD_REC_CONN, "connection", sizeof(struct msd_conn_rec) },
};

const char *record_kind_name(unsigned kind)
{
	for (size_t i = 0; i < sizeof(record_kinds) / sizeof(record_kinds[0]); i++)
		if (record_kinds[i].kind == kind)
			return record_kinds[i].name;
	return "unknown";
}

static int record_bad(char *why, size_t whylen, const struct msd_rec_hdr *rec, const char *fmt, ...)
{
	char detail[128];
	va_list ap;

	if (!why || !whylen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	snprintf(why, whylen, "%s record (kind %u): %s", record_kind_name(rec->kind), rec->kind, detail);
	return -1;
}

static int record_check_string(const char *s, size_t len, const char *name, const struct msd_rec_hdr *rec,
			       char *why, size_t whylen)
{
	if (memchr(s, '\0', len))
		return 0;
	return record_bad(why, whylen, rec, "%s is not NUL-terminated within its %zu bytes", name, len);
}

#define CHECK_STRING(rec, field, why, whylen)                                                          \
	record_check_string((rec)->field, sizeof((rec)->field), #field, &(rec)->hdr, why, whylen)

static int record_check_data(const struct msd_data_rec *d, char *why, size_t whylen)
{
	const struct msd_rec_hdr *h = &d->hdr;

	if (d->cap_len > h->size - sizeof(*d))
		return record_bad(why, whylen, h, "cap_len %u exceeds the %zu payload bytes of the record",
				  d->cap_len, h->size - sizeof(*d));
	if (d->dir != MSD_DIR_READ && d->dir != MSD_DIR_WRITE)
		return record_bad(why, whylen, h, "direction %u is neither read nor write", d->dir);
	if (d->role >= MSD_ROLE__COUNT && d->role != MSD_ROLE_CONN)
		return record_bad(why, whylen, h, "unknown role %u", d->role);
	/* Offsets and lengths are added together downstream: bounded, they cannot wrap. A
	 * syscall moves at most SSIZE_MAX bytes; no stream gets near 2^63. (fd is only
	 * informational: the role decides, and an uncaptured transfer may have none.) */
	if (d->stream_off > INT64_MAX || d->syscall_len > INT64_MAX || d->hole_off > INT64_MAX ||
	    d->hole_len > INT64_MAX)
		return record_bad(why, whylen, h, "an offset or length out of range (stream_off %llu, syscall_len %llu, "
				  "hole %llu+%llu)", (unsigned long long)d->stream_off,
				  (unsigned long long)d->syscall_len, (unsigned long long)d->hole_off,
				  (unsigned long long)d->hole_len);
	return 0;
}

static int record_check_proc(const struct msd_proc_rec *p, char *why, size_t whylen)
{
	const struct msd_rec_hdr *h = &p->hdr;

	if (p->cmdline_len > h->size - sizeof(*p))
		return record_bad(why, whylen, h, "cmdline_len %u exceeds the %zu cmdline bytes of the record",
				  p->cmdline_len, h->size - sizeof(*p));
	if (CHECK_STRING(p, comm, why, whylen) < 0 || CHECK_STRING(p, exe, why, whylen) < 0)
		return -1;
	return 0;
}

/* conn_id and the event route the record; the unix path is read with its array's length
 * (it need not end with a NUL, as sun_path need not). */
static int record_check_conn(const struct msd_conn_rec *c, char *why, size_t whylen)
{
	if (c->event < MSD_CONN_ACCEPT || c->event > MSD_CONN_SEEN)
		return record_bad(why, whylen, &c->hdr, "unknown connection event %u", c->event);
	return 0;
}

static int record_check_discover(const struct msd_discover_rec *d, char *why, size_t whylen)
{
	if (d->cmdline_len > sizeof(d->cmdline))
		return record_bad(why, whylen, &d->hdr, "cmdline_len %u exceeds the %zu cmdline bytes of the record",
				  d->cmdline_len, sizeof(d->cmdline));
	return CHECK_STRING(d, comm, why, whylen);
}

int record_check(const struct msd_rec_hdr *rec, char *why, size_t whylen)
{
	size_t min_size = 0;

	for (size_t i = 0; i < sizeof(record_kinds) / sizeof(record_kinds[0]); i++)
		if (record_kinds[i].kind == rec->kind)
			min_size = record_kinds[i].min_size;
	if (!min_size)
		return record_bad(why, whylen, rec, "not a kind this mcpsonde knows");
	if (rec->abi != MSD_ABI_VERSION)
		return record_bad(why, whylen, rec, "record ABI %u, expected %d", rec->abi, MSD_ABI_VERSION);
	if (rec->size < min_size)
		return record_bad(why, whylen, rec, "%u bytes, shorter than the %zu of its fixed part", rec->size,
				  min_size);
	switch (rec->kind) {
	case MSD_REC_DATA:
		return record_check_data((const struct msd_data_rec *)rec, why, whylen);
	case MSD_REC_PROC:
		return record_check_proc((const struct msd_proc_rec *)rec, why, whylen);
	case MSD_REC_DISCOVER:
		return record_check_discover((const struct msd_discover_rec *)rec, why, whylen);
	case MSD_REC_FORK:
		return CHECK_STRING((const struct msd_fork_rec *)rec, comm, why, whylen);
	case MSD_REC_EXEC:
		if (CHECK_STRING((const struct msd_exec_rec *)rec, comm, why, whylen) < 0)
			return -1;
		return CHECK_STRING((const struct msd_exec_rec *)rec, filename, why, whylen);
	case MSD_REC_EXIT:
		return CHECK_STRING((const struct msd_exit_rec *)rec, comm, why, whylen);
	case MSD_REC_CONN:
		return record_check_conn((const struct msd_conn_rec *)rec, why, whylen);
	case MSD_REC_LOSS:
		if (((const struct msd_loss_rec *)rec)->reason >= MSD_DROP__MAX)
			return record_bad(why, whylen, rec, "unknown loss reason %u",
					  ((const struct msd_loss_rec *)rec)->reason);
		return 0;
	default:
		return 0;
	}
}
