/* tools.c -- a server's tool catalog: definition sizes, drift between tools/list
 * results, and argument checks against inputSchema.
 *
 * Per tool the catalog keeps a fingerprint (64-bit FNV-1a of the minified JSON with
 * sorted keys) of each compared field, so drift detection costs a few words per tool
 * whatever the size of the definitions and ignores key order; and a copy of inputSchema
 * for argument checks. Tools are kept sorted by name (binary search per call). Bounded:
 * TOOLS_MAX tools, the first ones listed; TOOLS_VIOLATIONS_MAX violations per call. A catalog
 * that holds part of a list (capped, or learned from a cut frame) is partial: it cannot say a
 * tool is missing, and drift is reported only where both lists are whole enough to know. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcpsonde/tools.h"

#define TOOLS_VIOLATIONS_MAX 32

/* The fields compared between two lists, in the order they are reported. */
static const char *const tool_fields[] = { "description", "inputSchema", "outputSchema", "annotations" };
#define TOOL_NFIELDS (sizeof(tool_fields) / sizeof(tool_fields[0]))

struct tool {
	char *name;
	uint64_t fingerprint[TOOL_NFIELDS]; /* 0 when the field is absent */
	json_t *input_schema;               /* own copy, or NULL */
	struct tool_def_size size;
	size_t order;                       /* position in its tools/list */
};

struct tool_catalog {
	struct tool *tools; /* sorted by name */
	size_t n;
	bool known;
	bool partial;       /* the last list was cut, or had more than TOOLS_MAX tools */
};

struct dump_state {
	uint64_t hash;
	size_t bytes;
};

static int dump_hash(const char *buf, size_t size, void *data)
{
	struct dump_state *st = data;

	for (size_t i = 0; i < size; i++)
		st->hash = (st->hash ^ (unsigned char)buf[i]) * 0x100000001b3ull;
	st->bytes += size;
	return 0;
}

/* Minified size and key-order-independent fingerprint of v. Strings, numbers and the
 * like are encoded too (JSON_ENCODE_ANY). */
static struct dump_state json_measure(const json_t *v)
{
	struct dump_state st = { 0xcbf29ce484222325ull, 0 };

	if (v)
		json_dump_callback(v, dump_hash, &st, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (st.hash == 0)
		st.hash = 1; /* 0 means absent */
	return st;
}

static void tool_free(struct tool *t)
{
	free(t->name);
	json_decref(t->input_schema);
}

static int tool_cmp(const void *a, const void *b)
{
	return strcmp(((const struct tool *)a)->name, ((const struct tool *)b)->name);
}

/* Sorting: by name, then by position, so that the first of duplicates comes first. */
static int tool_cmp_order(const void *a, const void *b)
{
	const struct tool *x = a, *y = b;
	int cmp = strcmp(x->name, y->name);

	return cmp ? cmp : (x->order > y->order) - (x->order < y->order);
}

static const struct tool *tools_find(const struct tool_catalog *c, const char *name)
{
	struct tool key = { .name = (char *)name };

	if (!name || !c->n)
		return NULL;
	return bsearch(&key, c->tools, c->n, sizeof(*c->tools), tool_cmp);
}

struct tool_catalog *tools_new(void)
{
	return calloc(1, sizeof(struct tool_catalog));
}

static void tools_clear(struct tool *tools, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tool_free(&tools[i]);
	free(tools);
}

void tools_free(struct tool_catalog *c)
{
	if (!c)
		return;
	tools_clear(c->tools, c->n);
	free(c);
}

static bool tool_parse(const json_t *def, struct tool *t)
{
	const json_t *name = json_object_get(def, "name");
	struct dump_state st;

	if (!json_is_object(def) || !json_is_string(name))
		return false;
	memset(t, 0, sizeof(*t));
	if (!(t->name = strdup(json_string_value(name))))
		return false;
	t->size.name = t->name;
	for (size_t f = 0; f < TOOL_NFIELDS; f++) {
		const json_t *v = json_object_get(def, tool_fields[f]);
		if (!v)
			continue;
		st = json_measure(v);
		t->fingerprint[f] = st.hash;
		if (f == 0)
			t->size.description_bytes = st.bytes;
		else if (f == 1 || f == 2)
			t->size.schema_bytes += st.bytes;
	}
	t->size.total_bytes = json_measure(def).bytes;
	if (json_is_object(json_object_get(def, "inputSchema")))
		t->input_schema = json_deep_copy(json_object_get(def, "inputSchema"));
	return true;
}

static void change_add(json_t **change, const char *key, json_t *item)
{
	if (!*change)
		*change = json_pack("{s:[],s:[],s:[]}", "added", "removed", "changed");
	if (*change)
		json_array_append_new(json_object_get(*change, key), item);
	else
		json_decref(item);
}

json_t *tools_update(struct tool_catalog *c, const json_t *tools, bool cut)
{
	size_t n = 0, i, j, idx;
	struct tool *next;
	json_t *change = NULL, *def;
	bool first = !c->known, capped = false;

	if (!json_is_array(tools))
		return NULL;
	next = calloc(json_array_size(tools) < TOOLS_MAX ? json_array_size(tools) + 1 : TOOLS_MAX, sizeof(*next));
	if (!next)
		return NULL;
	json_array_foreach(tools, idx, def) {
		if (n >= TOOLS_MAX) {
			capped = true;
			break;
		}
		if (tool_parse(def, &next[n]))
			next[n++].order = idx;
	}
	qsort(next, n, sizeof(*next), tool_cmp_order);
	/* a name listed twice: the first definition wins, as in a client's lookup */
	for (i = j = 0; i < n; i++) {
		if (j > 0 && strcmp(next[j - 1].name, next[i].name) == 0) {
			tool_free(&next[i]);
			continue;
		}
		next[j++] = next[i];
	}
	n = j;

	/* Merge the two sorted lists. A tool missing from a partial list may be beyond its end:
	 * "removed" needs the new list whole, "added" the old one. */
	for (i = j = 0; !first && (i < c->n || j < n);) {
		int cmp = i == c->n ? 1 : j == n ? -1 : strcmp(c->tools[i].name, next[j].name);
		if (cmp < 0) {
			if (!capped && !cut)
				change_add(&change, "removed", json_string(c->tools[i].name));
			i++;
		} else if (cmp > 0) {
			if (!c->partial)
				change_add(&change, "added", json_string(next[j].name));
			j++;
		} else {
			json_t *fields = NULL;
			for (size_t f = 0; f < TOOL_NFIELDS; f++) {
				if (c->tools[i].fingerprint[f] == next[j].fingerprint[f])
					continue;
				if (!fields)
					fields = json_array();
				json_array_append_new(fields, json_string(tool_fields[f]));
			}
			if (fields)
				change_add(&change, "changed", json_pack("{s:s,s:o}", "name", next[j].name, "fields", fields));
			i++, j++;
		}
	}
	tools_clear(c->tools, c->n);
	c->tools = next;
	c->n = n;
	c->known = true;
	c->partial = capped || cut;
	return change;
}

bool tools_known(const struct tool_catalog *c)
{
	return c->known;
}

bool tools_partial(const struct tool_catalog *c)
{
	return c->partial;
}

bool tools_has(const struct tool_catalog *c, const char *name)
{
	return tools_find(c, name) != NULL;
}

size_t tools_count(const struct tool_catalog *c)
{
	return c->n;
}

const struct tool_def_size *tools_size_at(const struct tool_catalog *c, size_t i)
{
	return i < c->n ? &c->tools[i].size : NULL;
}

/* ---- argument checks ---------------------------------------------------------------- */

static const char *json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	case JSON_NULL: return "null";
	}
	return "unknown";
}

/* JSON Schema types: "integer" accepts 2.0, "number" accepts integers. */
static bool type_matches(const char *type, const json_t *v)
{
	if (strcmp(type, "integer") == 0)
		return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
					      isfinite(json_real_value(v)));
	if (strcmp(type, "number") == 0)
		return json_is_number(v);
	if (strcmp(type, "boolean") == 0)
		return json_is_boolean(v);
	if (strcmp(type, "string") == 0)
		return json_is_string(v);
	if (strcmp(type, "object") == 0)
		return json_is_object(v);
	if (strcmp(type, "array") == 0)
		return json_is_array(v);
	if (strcmp(type, "null") == 0)
		return json_is_null(v);
	return true; /* a type we do not know: not our business */
}

/* true when v conforms to the "type" keyword t (a string or an array of strings). */
static bool type_conforms(const json_t *t, const json_t *v)
{
	size_t i;
	const json_t *e;

	if (json_is_string(t))
		return type_matches(json_string_value(t), v);
	if (!json_is_array(t) || json_array_size(t) == 0)
		return true;
	json_array_foreach(t, i, e)
		if (json_is_string(e) && type_matches(json_string_value(e), v))
			return true;
	return false;
}

/* json_equal, except that numbers compare by value (1 == 1.0). */
static bool json_value_equal(const json_t *a, const json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	return json_equal((json_t *)a, (json_t *)b);
}

static void violation_add(json_t **out, json_t *v)
{
	if (!v)
		return;
	if (!*out)
		*out = json_array();
	if (*out && json_array_size(*out) < TOOLS_VIOLATIONS_MAX)
		json_array_append_new(*out, v);
	else
		json_decref(v);
}

static bool violations_full(json_t *out)
{
	return out && json_array_size(out) >= TOOLS_VIOLATIONS_MAX;
}

json_t *tools_check_args(const struct tool_catalog *c, const char *name, const json_t *arguments)
{
	const struct tool *t = tools_find(c, name);
	const json_t *schema, *props, *required, *e, *prop, *v;
	json_t *out = NULL, *empty = NULL;
	const char *key;
	size_t i;

	if (!t || !(schema = t->input_schema))
		return NULL;
	if (!arguments)
		arguments = empty = json_object(); /* "arguments" omitted: as if {} */
	if (!json_is_object(arguments)) {
		violation_add(&out, json_pack("{s:s,s:s,s:s}", "kind", "wrong_type", "expected", "object", "actual",
					      json_type_name(arguments)));
		return out;
	}
	props = json_object_get(schema, "properties");
	if (!json_is_object(props))
		props = NULL;

	required = json_object_get(schema, "required");
	if (json_is_array(required)) {
		json_array_foreach(required, i, e) {
			if (violations_full(out))
				break;
			if (json_is_string(e) && !json_object_get(arguments, json_string_value(e)))
				violation_add(&out, json_pack("{s:s,s:s}", "kind", "missing_required", "property",
							      json_string_value(e)));
		}
	}

	json_object_foreach((json_t *)arguments, key, v) {
		if (violations_full(out))
			break;
		prop = props ? json_object_get(props, key) : NULL;
		if (!prop) {
			if (json_is_false(json_object_get(schema, "additionalProperties")))
				violation_add(&out, json_pack("{s:s,s:s}", "kind", "unknown_property", "property", key));
			continue;
		}
		if (!json_is_object(prop))
			continue;
		const json_t *type = json_object_get(prop, "type");
		if (type && !type_conforms(type, v)) {
			json_t *expected = json_is_string(type) ? json_incref((json_t *)type) : json_deep_copy(type);
			violation_add(&out, json_pack("{s:s,s:s,s:o,s:s}", "kind", "wrong_type", "property", key, "expected",
						      expected, "actual", json_type_name(v)));
			continue;
		}
		const json_t *en = json_object_get(prop, "enum");
		if (json_is_array(en)) {
			size_t k;
			const json_t *allowed;
			bool found = false;
			json_array_foreach(en, k, allowed)
				if ((found = json_value_equal(allowed, v)))
					break;
			if (!found)
				violation_add(&out, json_pack("{s:s,s:s}", "kind", "not_in_enum", "property", key));
		}
	}
	json_decref(empty);
	return out;
}
