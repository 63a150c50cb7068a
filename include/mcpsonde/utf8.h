/* utf8.h -- text from observed processes: validate it, cut it, make it safe to show.
 *
 * Everything a peer writes (names, ids, error messages, stderr lines, previews) arrives as
 * bytes that may be invalid UTF-8, cut in the middle of a character, or full of terminal
 * control sequences. These are the one place that decides what a character is:
 *   - utf8_cut() never splits a valid sequence, so a bounded copy stays valid;
 *   - utf8_sanitize() makes text valid, each invalid byte becoming U+FFFD (metric labels,
 *     the JSON writer does the same while it escapes);
 *   - utf8_escape_controls() makes text inert on a terminal: no byte it writes starts an
 *     escape sequence, moves the cursor or starts a new line. */
#ifndef MCPSONDE_UTF8_H
#define MCPSONDE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define UTF8_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/* Length of the valid UTF-8 sequence at p (at most n bytes, n >= 1), 0 when invalid
 * (a bad lead or continuation byte, an overlong form, a surrogate, beyond U+10FFFF, or a
 * sequence cut by n). *cp gets the code point when cp is not NULL. */
size_t utf8_seq_len(const unsigned char *p, size_t n, uint32_t *cp);
/* C1 controls (8-bit CSI and friends), the line and paragraph separators, and the
 * bidirectional embeddings, overrides and isolates: valid characters that act on a terminal
 * or on how text is laid out (text that reads differently than it is). */
bool utf8_is_layout_control(uint32_t cp);
/* The longest prefix of s[0..n) of at most max bytes that does not end inside a valid
 * sequence. */
size_t utf8_cut(const char *s, size_t n, size_t max);
/* Copies s[0..n) to out as valid UTF-8 (invalid bytes become U+FFFD), at most cap - 1
 * bytes cut on a character boundary, NUL-terminated (cap >= 1). Returns the bytes written. */
size_t utf8_sanitize(const char *s, size_t n, char *out, size_t cap);
/* Writes s[0..n) to out with every character that could act on a terminal escaped:
 * C0 controls and DEL as \n \r \t or \xHH, C1 controls (U+0080..U+009F), line and paragraph
 * separators and bidirectional overrides as \uHHHH, invalid bytes as \xHH. Writes at most
 * cap - 1 bytes, never half an escape, NUL-terminated when cap >= 1; returns the length of
 * the whole escaped text (snprintf-like). */
size_t utf8_escape_controls(const char *s, size_t n, char *out, size_t cap);
/* utf8_escape_controls() of a NUL-terminated string, written to f ("" for NULL). */
void utf8_fputs_safe(const char *s, FILE *f);

#endif
