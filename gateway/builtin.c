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
        bg_strlcpy(dataset, ds, sizeof(dataset));
    }
    json_decref(req);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:n,s:s}", "city", s->conn->w->srv->cfg->city,
                          "dataset", dataset, "request_id", s->request_id, "route",
                          s->resp_route, "result", "note", "built-in responder");
    gw_stream_respond_json(s, 200, j);
}
