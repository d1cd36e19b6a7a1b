/* space/json.h: the JSON faces of the query model. A client's query object -> space_query;
 * the upstream protocol (docs/upstream.md) between a gateway and an external data space:
 * query out, aggregate *state* back; and the final answer a client sees, computed from merged
 * states (means, variances, quantiles, Bland-Altman figures), with suppressed and noisy values
 * typed as objects, never sentinel numbers. jansson types appear here only.
 * Not for: deciding what may be released (trust/disclosure.h). */
#ifndef SPACE_JSON_H
#define SPACE_JSON_H
#include <jansson.h>

#include "base/err.h"
#include "space/space.h"

/* Reads the query members of a client's request object |root| ("op", "field", "fields",
 * "edges", "probs", "where", "group_by"; "dataset" and contracts are the caller's) into |q|,
 * with q->dataset left empty. "op" defaults to "count" ("operation" is accepted as its alias).
 * Returns 0 or BG_ERR_INVAL with the exact member in |eb|; unknown members are errors too. */
int space_query_from_json(const json_t *root, space_query *q, bg_errbuf *eb);
/* The query as the upstream protocol sends it (with "dataset": q->dataset); new reference. */
json_t *space_query_to_json(const space_query *q);

/* The aggregate state of |r| as the upstream protocol carries it; new reference or NULL. */
json_t *space_result_state_to_json(const space_result *r);
/* Reads an external data space's answer |j| (an object with "state") for query |q| into |r|
 * (caller disposes). Anything that is not an aggregate state of q's operation and layout
 * (rows, free text, wrong op, missing members, bins of the wrong length) is BG_ERR_INVAL with
 * the reason in |eb|. */
int space_result_state_from_json(const json_t *j, const space_query *q, space_result *r,
                                 bg_errbuf *eb);

/* The client's "result" for query |q| on |schema| from the merged state |merged|; |legs| are
 * the per-city states (agreement: between-city heterogeneity), may be 0. New reference, or
 * NULL on ENOMEM. */
json_t *space_answer_json(const space_query *q, const space_schema *schema,
                          const space_result *merged, const space_result *const *legs,
                          size_t nlegs);

#endif /* SPACE_JSON_H */
