/* tools.h -- a server's tool catalog from its last tools/list: drift and argument checks.
 *
 * The catalog keeps, per tool, its minified definition parts. tools_update() compares a
 * new tools/list with the previous one (description, inputSchema, outputSchema, annotations)
 * and tools_check_args() checks call arguments against the tool's inputSchema: missing
 * required properties, wrong JSON types of declared properties, values outside an enum,
 * unknown properties when additionalProperties is false. Bounded: at most TOOLS_MAX tools
 * are kept per catalog, the first ones listed; a catalog that holds part of its list is
 * partial (tools_partial). */
#ifndef MCPSONDE_TOOLS_H
#define MCPSONDE_TOOLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define TOOLS_MAX 4096

struct tool_catalog;

struct tool_def_size {
	const char *name;
	size_t description_bytes; /* minified JSON of the description string */
	size_t schema_bytes;      /* minified JSON of inputSchema (+ outputSchema) */
	size_t total_bytes;       /* minified JSON of the whole definition */
};

struct tool_catalog *tools_new(void);
void tools_free(struct tool_catalog *c);
/* Takes a tools/list result's "tools" array (cut: only its beginning could be read). Returns
 * NULL when this is the first list or nothing changed, else a new object {added:[names],
 * removed:[names], changed:[{name, fields:[...]}]}: the caller owns it. */
json_t *tools_update(struct tool_catalog *c, const json_t *tools, bool cut);
bool tools_known(const struct tool_catalog *c); /* a tools/list has been seen */
/* The catalog holds part of the last list: cut, or longer than TOOLS_MAX. */
bool tools_partial(const struct tool_catalog *c);
bool tools_has(const struct tool_catalog *c, const char *name);
/* A new array of {kind, property, ...} violations, or NULL when the arguments conform (or
 * the tool is unknown, or no schema). kinds: missing_required, wrong_type, not_in_enum,
 * unknown_property. */
json_t *tools_check_args(const struct tool_catalog *c, const char *name, const json_t *arguments);
size_t tools_count(const struct tool_catalog *c);
/* Definition sizes, for i in [0, tools_count). */
const struct tool_def_size *tools_size_at(const struct tool_catalog *c, size_t i);

#endif
