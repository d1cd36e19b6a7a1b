/* gateway/builtin.c: the built-in responder that stands in for a city's data space until
 * the embedded reference data space lands (issue 4). It answers in-process with who was asked,
 * for what, and the route the query took; it computes nothing and returns no rows. */
#include "gateway/gw_int.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

void gw_builtin_answer(gw_stream *s)
{
    char dataset[256] = "";
    json_t *req = json_loadb((const char *)s->body.data, s->body.len, 0, NULL);
    const char *ds = json_string_value(json_object_get(req, "dataset"));
    if (ds != NULL) {
        snprintf(dataset, sizeof(dataset), "%s", ds);
    }
    json_decref(req);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:n,s:s}", "city", s->conn->w->srv->cfg->city,
                          "dataset", dataset, "request_id", s->request_id, "route",
                          s->resp_route, "result", "note", "built-in responder");
    char *txt = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (txt == NULL) {
        gw_stream_error(s, 500, "internal", "out of memory");
        return;
    }
    size_t len = strlen(txt);
    txt[len] = '\n';
    gw_stream_respond(s, 200, "application/json", txt, len + 1);
    free(txt);
}
