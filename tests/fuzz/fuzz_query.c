/* tests/fuzz/fuzz_query.c: arbitrary bytes as a client's JSON query and as an external data
 * space's answer. The bytes are parsed by jansson; a JSON value goes through
 * space_query_from_json() and, when it reads, space_query_check() against a shipped schema and
 * space_db_execute() on a small embedded data space; the same value is also read as a data
 * space's aggregate state for a fixed grouped query and, when it reads, rendered as a client
 * answer. Nothing may crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "space/data.h"
#include "space/json.h"
#include "space/space.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static space_db *db;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (db == NULL) {
        const char *const ds[2] = {"stroke-registry", "neonatal-bilirubin"};
        bg_errbuf eb;
        if (space_db_new(&db, "hongkong", 1000, 1, ds, 2, &eb) != 0) {
            abort();
        }
    }
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (j == NULL) {
        return 0;
    }
    space_query q;
    bg_errbuf eb;
    if (space_query_from_json(j, &q, &eb) == 0) {
        const char *names[2] = {"stroke-registry", "neonatal-bilirubin"};
        const char *name = names[size % 2];
        strcpy(q.dataset, name);
        const space_schema *sc = space_schema_find(name);
        if (space_query_check(&q, sc, &eb) == 0) {
            space_exec_opts opts = {.k = 5, .history_key = NULL};
            space_result r;
            if (space_db_execute(db, &q, &opts, &r, &eb) == 0) {
                json_t *a = space_answer_json(&q, sc, &r, NULL, 0);
                json_decref(a);
                space_result_dispose(&r);
            }
        }
    }
    /* the same value as an external data space's state for a grouped histogram */
    space_query g;
    memset(&g, 0, sizeof(g));
    strcpy(g.dataset, "stroke-registry");
    g.op = (space_op)(1 + size % 6);
    strcpy(g.field, "age");
    strcpy(g.field2, "nihss");
    g.edges[0] = 40;
    g.edges[1] = 65;
    g.nedges = 2;
    g.probs[0] = 0.5;
    g.nprobs = 1;
    strcpy(g.group_by[0], "sex");
    g.ngroup = 1;
    space_result st;
    if (space_result_state_from_json(j, &g, &st, &eb) == 0) {
        json_t *a = space_answer_json(&g, space_schema_find("stroke-registry"), &st, NULL, 0);
        json_decref(a);
        space_result_dispose(&st);
    }
    json_decref(j);
    return 0;
}
