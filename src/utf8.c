/* utf8.c -- validate, cut, sanitize and escape text from observed processes (utf8.h). */
#include <stdbool.h>
#include <string.h>

#include "mcpsonde/utf8.h"

size_t utf8_seq_len(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t len, i;
	uint32_t c;

	if (p[0] < 0x80) {
		if (cp)
			*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, c = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) || (len == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	if (cp)
		*cp = c;
	return len;
}

size_t utf8_cut(const char *s, size_t n, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t k;

	if (n <= max)
		return n;
	/* Only a lead byte at most 3 bytes back can start a sequence that max splits. */
	for (k = max; k > 0 && max - k < 3 && (p[k] & 0xc0) == 0x80; k--)
		;
	if (k < max && utf8_seq_len(p + k, n - k, NULL) > max - k)
		return k;
	return max;
}

size_t utf8_sanitize(const char *s, size_t n, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0, len;

	while (n > 0) {
		len = utf8_seq_len(p, n, NULL);
		if (len == 0) {
			if (o + 3 >= cap)
				break;
			memcpy(out + o, UTF8_REPLACEMENT, 3);
			o += 3;
			p++, n--;
			continue;
		}
		if (o + len >= cap)
			break;
		memcpy(out + o, p, len);
		o += len;
		p += len, n -= len;
	}
	out[o] = '\0';
	return o;
}

bool utf8_is_layout_control(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

static const char hex[] = "0123456789abcdef";

size_t utf8_escape_controls(const char *s, size_t n, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, total = 0, w = 0;
	bool full = cap == 0;

	while (i < n) {
		char esc[8];
		const char *piece = esc;
		size_t plen, adv;
		uint32_t cp;

		if (p[i] >= 0x20 && p[i] < 0x7f) {
			size_t j = i + 1;
			while (j < n && p[j] >= 0x20 && p[j] < 0x7f)
				j++;
			piece = s + i;
			plen = adv = j - i;
			/* Plain ASCII can be cut anywhere: fill what is left. */
			if (!full && w + plen >= cap) {
				memcpy(out + w, piece, cap - 1 - w);
				w = cap - 1;
				full = true;
			}
		} else if (p[i] < 0x80 || !(adv = utf8_seq_len(p + i, n - i, &cp))) {
			const char *named = p[i] == '\n' ? "\\n" : p[i] == '\r' ? "\\r" : p[i] == '\t' ? "\\t" : NULL;
			adv = 1;
			if (named) {
				memcpy(esc, named, 2);
				plen = 2;
			} else {
				esc[0] = '\\', esc[1] = 'x', esc[2] = hex[p[i] >> 4], esc[3] = hex[p[i] & 15];
				plen = 4;
			}
		} else if (utf8_is_layout_control(cp)) {
			esc[0] = '\\', esc[1] = 'u';
			for (int k = 0; k < 4; k++)
				esc[2 + k] = hex[(cp >> (12 - 4 * k)) & 15];
			plen = 6;
		} else {
			piece = s + i;
			plen = adv;
		}
		if (!full) {
			if (w + plen < cap) {
				memcpy(out + w, piece, plen);
				w += plen;
			} else {
				full = true;
			}
		}
		total += plen;
		i += adv;
	}
	if (cap)
		out[w] = '\0';
	return total;
}

void utf8_fputs_safe(const char *s, FILE *f)
{
	char buf[1100]; /* an escape is at most 4 bytes per input byte: 4 * 256 + 1 */
	size_t n = s ? strlen(s) : 0;

	while (n > 0) {
		size_t chunk = utf8_cut(s, n, 256);
		size_t len = utf8_escape_controls(s, chunk, buf, sizeof(buf));
		fwrite(buf, 1, len, f);
		s += chunk;
		n -= chunk;
	}
}
