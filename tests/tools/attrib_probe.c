/* attrib_probe.c -- prints what attribution (src/attrib.c) says about processes, for the
 * e2e tests: one JSON object per PID on stdout, with the OpenTelemetry attributes, role,
 * state and QoS class, or {"pid": N, "gone": true}.
 *
 *   attrib_probe [--host-root DIR] PID...
 *
 * A test tool linked with attrib.o, not an mcpsonde command: attribution reaches users
 * through fleet mode's events, inventory and metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mcpsonde/attrib.h"

int main(int argc, char **argv)
{
	struct attrib_opts opts = { 0 };
	struct attrib *a;
	char err[256];
	int i = 1;

	if (argc > 2 && strcmp(argv[1], "--host-root") == 0) {
		opts.host_root = argv[2];
		i = 3;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: attrib_probe [--host-root DIR] PID...\n");
		return 2;
	}
	if (!(a = attrib_new(&opts, err, sizeof(err)))) {
		fprintf(stderr, "attrib_probe: %s\n", err);
		return 1;
	}
	for (; i < argc; i++) {
		const struct attrib_record *r = attrib_lookup(a, (pid_t)atoi(argv[i]), 0, 0);
		json_t *o = json_pack("{s:i}", "pid", atoi(argv[i]));
		struct attrib_attr attrs[ATTRIB_ATTRS_MAX];

		if (!r) {
			json_object_set_new(o, "gone", json_true());
		} else {
			size_t n = attrib_attributes(r, attrs);
			for (size_t k = 0; k < n; k++)
				json_object_set_new(o, attrs[k].key, json_string(attrs[k].value));
			json_object_set_new(o, "role", json_string(attrib_role_name(r->role)));
			json_object_set_new(o, "state", json_string(attrib_state_name(r->state)));
			json_object_set_new(o, "qos", json_string(attrib_qos_name(r->qos)));
		}
		json_dumpf(o, stdout, JSON_COMPACT | JSON_SORT_KEYS);
		fputc('\n', stdout);
		json_decref(o);
	}
	attrib_free(a);
	return 0;
}
