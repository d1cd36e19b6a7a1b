/* gateway/ledger_api.c: the regulators' read-only view of this city's receipts ledger
 * (docs/regulators.md): the signed checkpoint and its verifier key, receipts with their
 * inclusion proofs, consistency proofs between tree sizes, filtered pages from the ledger's
 * secondary indexes, and bulk export as JSON lines. Hashes and signatures are base64 as in
 * RFC 9162. Who may call: an identity with role "regulator" of this gateway's own city (its
 * ledger records only events this city took part in, so the city's regulator sees all of it and
 * no other city's regulator sees any). Not for: writing receipts (receipts.c). */
#include "gateway/gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "trust/ledger.h"

#define PAGE_MAX 1000
#define EXPORT_MAX 100000

static json_t *b64(const uint8_t *p, size_t n)
{
    char out[4 * ((TRUST_RECEIPT_MAX_BYTES + 2) / 3) + 1];
    if (n > TRUST_RECEIPT_MAX_BYTES) {
        return json_null();
    }
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return json_string(out);
}

static const char *kind_name(uint32_t k)
{
    static const char *const names[] = {"?", "query", "refusal", "contract_proposed",
                                        "contract_agreed", "contract_refused",
                                        "contract_revoked", "identity_issued",
                                        "identity_renewed", "identity_revoked"};
    return k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

static const char *decision_name(uint32_t d)
{
    return d == TRUST_RECEIPT_ALLOWED ? "allowed"
           : d == TRUST_RECEIPT_REFUSED ? "refused"
           : d == TRUST_RECEIPT_FAILED  ? "failed"
                                        : "?";
}

json_t *gw_receipt_json(const trust_receipt *r)
{
    json_t *transit = json_array();
    for (size_t i = 0; i < r->ntransit; i++) {
        json_array_append_new(transit, json_string(r->transit[i]));
    }
    json_t *ds = json_array();
    for (size_t i = 0; i < r->ndatasets; i++) {
        json_array_append_new(ds, json_string(r->datasets[i]));
    }
    json_t *j = json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:o,s:s,s:i,s:I,s:s,s:i}",
                          "index", (json_int_t)r->index, "time_ms", (json_int_t)r->time_ms,
                          "kind", kind_name(r->kind), "request_id", r->request_id, "requester",
                          r->requester, "home_city", r->home_city, "provider_city",
                          r->provider_city, "transit", transit, "contract", r->contract_id,
                          "purpose", r->purpose, "datasets", ds, "operation", r->operation,
                          "cells_suppressed", (int)r->cells_suppressed, "epsilon_micro",
                          (json_int_t)r->epsilon_micro, "decision", decision_name(r->decision),
                          "error_code", (int)r->error_code);
    if (j == NULL) {
        return NULL;
    }
    if (r->has_query_digest) {
        json_object_set_new(j, "query_digest", b64(r->query_digest, sizeof(r->query_digest)));
    }
    if (r->has_result_digest) {
        json_object_set_new(j, "result_digest", b64(r->result_digest, sizeof(r->result_digest)));
    }
    if (r->queries_used > 0) {
        json_object_set_new(j, "queries_used", json_integer((json_int_t)r->queries_used));
    }
    json_t *cp = json_pack("{s:s}", "city", r->counterpart_city);
    if (r->has_counterpart_ref) {
        json_object_set_new(cp, "index", json_integer((json_int_t)r->counterpart_index));
        json_object_set_new(cp, "leaf_hash", b64(r->counterpart_leaf_hash, TRUST_LEDGER_HASH_LEN));
    }
    json_object_set_new(j, "counterpart", cp);
    return j;
}

json_t *gw_receipt_ref_json(const char *city, uint64_t index, const uint8_t leaf[32])
{
    return json_pack("{s:s,s:I,s:o}", "city", city, "index", (json_int_t)index, "leaf_hash",
                     b64(leaf, TRUST_LEDGER_HASH_LEN));
}

/* ---- query strings ------------------------------------------------------------------------ */

/* The value of |key| in |s|'s query string into |out| ("" when absent). False when present
 * but too long or not plain ([A-Za-z0-9._:/-], no escapes needed for ids and numbers). */
static bool query_arg(const gw_stream *s, const char *key, char *out, size_t cap)
{
    out[0] = 0;
    const char *q = strchr(s->path, '?');
    size_t kl = strlen(key);
    while (q != NULL) {
        q++;
        if (strncmp(q, key, kl) == 0 && q[kl] == '=') {
            const char *v = q + kl + 1;
            size_t n = strcspn(v, "&");
            if (n >= cap) {
                return false;
            }
            for (size_t i = 0; i < n; i++) {
                char c = v[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
                          c == '/' || c == '-';
                if (!ok) {
                    return false;
                }
            }
            memcpy(out, v, n);
            out[n] = 0;
            return true;
        }
        q = strchr(q, '&');
    }
    return true;
}

/* Unsigned decimal query argument |key| (|def| when absent); false (answered 400) when bad. */
static bool query_u64(gw_stream *s, const char *key, uint64_t def, uint64_t *out)
{
    char v[24];
    if (!query_arg(s, key, v, sizeof(v))) {
        gw_stream_error(s, 400, "bad_request", "query argument %s is malformed", key);
        return false;
    }
    if (v[0] == 0) {
        *out = def;
        return true;
    }
    char *end = NULL;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end != 0 || v[0] == '-' || strlen(v) > 19) {
        gw_stream_error(s, 400, "bad_request", "query argument %s must be an unsigned integer",
                        key);
        return false;
    }
    *out = (uint64_t)x;
    return true;
}

/* ---- endpoints ----------------------------------------------------------------------------- */

static json_t *proof_json(const trust_ledger_proof *p)
{
    json_t *a = json_array();
    for (size_t i = 0; i < p->len; i++) {
        json_array_append_new(a, b64(p->hash[i], TRUST_LEDGER_HASH_LEN));
    }
    return a;
}

static void unavailable(gw_stream *s, int rv)
{
    gw_stream_error(s, 503, "ledger_unavailable", "the ledger cannot be read: %s",
                    bg_strerror(rv));
}

static void get_receipt(gw_stream *s, trust_ledger *l, const char *idx_text)
{
    char *end = NULL;
    unsigned long long idx = strtoull(idx_text, &end, 10);
    if (idx_text[0] == 0 || (*end != 0 && *end != '?') || idx_text[0] == '-') {
        gw_stream_error(s, 400, "bad_request", "a receipt index is an unsigned integer");
        return;
    }
    uint64_t size = 0;
    int rv = trust_ledger_size(l, &size);
    if (rv != 0) {
        unavailable(s, rv);
        return;
    }
    uint64_t tree_size;
    if (!query_u64(s, "tree_size", size, &tree_size)) {
        return;
    }
    if (tree_size > size || idx >= tree_size) {
        gw_stream_error(s, 400, "out_of_range",
                        "receipt %llu is not in a tree of size %llu (the ledger holds %llu)",
                        idx, (unsigned long long)tree_size, (unsigned long long)size);
        return;
    }
    bg_buf bytes;
    bg_buf_init(&bytes);
    trust_receipt r;
    trust_ledger_proof *p = malloc(sizeof(*p));
    if (p == NULL) {
        gw_stream_error(s, 500, "internal", "out of memory");
        return;
    }
    rv = trust_ledger_get(l, idx, &bytes, &r);
    if (rv == 0) {
        rv = trust_ledger_inclusion_proof(l, idx, tree_size, p);
    }
    if (rv != 0) {
        free(p);
        bg_buf_dispose(&bytes);
        unavailable(s, rv);
        return;
    }
    uint8_t leaf[TRUST_LEDGER_HASH_LEN];
    trust_ledger_leaf_hash(bytes.data, bytes.len, leaf);
    json_t *j = json_pack("{s:I,s:o,s:o,s:o,s:{s:I,s:o}}", "index", (json_int_t)idx, "receipt",
                          gw_receipt_json(&r), "receipt_b64", b64(bytes.data, bytes.len),
                          "leaf_hash", b64(leaf, sizeof(leaf)), "proof", "tree_size",
                          (json_int_t)tree_size, "hashes", proof_json(p));
    free(p);
    bg_buf_dispose(&bytes);
    gw_stream_respond_json(s, 200, j);
}

static void get_consistency(gw_stream *s, trust_ledger *l)
{
    uint64_t size = 0, m, n;
    int rv = trust_ledger_size(l, &size);
    if (rv != 0) {
        unavailable(s, rv);
        return;
    }
    if (!query_u64(s, "first", UINT64_MAX, &m) || !query_u64(s, "second", size, &n)) {
        return;
    }
    if (m == UINT64_MAX || m > n || n > size) {
        gw_stream_error(s, 400, "out_of_range",
                        "consistency needs first <= second <= %llu (the ledger's size)",
                        (unsigned long long)size);
        return;
    }
    trust_ledger_proof *p = malloc(sizeof(*p));
    if (p == NULL || (rv = trust_ledger_consistency_proof(l, m, n, p)) != 0) {
        free(p);
        unavailable(s, p == NULL ? BG_ERR_NOMEM : rv);
        return;
    }
    gw_stream_respond_json(s, 200,
                           json_pack("{s:I,s:I,s:o}", "first", (json_int_t)m, "second",
                                     (json_int_t)n, "hashes", proof_json(p)));
    free(p);
}

static bool filter_from(gw_stream *s, trust_ledger_filter *f, char *contract, char *requester,
                        char *city)
{
    uint64_t from, to;
    memset(f, 0, sizeof(*f));
    if (!query_arg(s, "contract", contract, 72) || !query_arg(s, "requester", requester, 256) ||
        !query_arg(s, "city", city, 64)) {
        gw_stream_error(s, 400, "bad_request", "contract, requester and city are plain ids");
        return false;
    }
    if (!query_u64(s, "from", 0, &from) || !query_u64(s, "to", 0, &to)) {
        return false;
    }
    f->contract_id = contract;
    f->requester = requester;
    f->counterpart_city = city;
    f->time_from = (int64_t)(from > INT64_MAX ? INT64_MAX : from);
    f->time_until = (int64_t)(to > INT64_MAX ? INT64_MAX : to);
    return true;
}

static void list_receipts(gw_stream *s, trust_ledger *l)
{
    trust_ledger_filter f;
    char contract[72], requester[256], city[64];
    uint64_t after, limit;
    /* a cursor: receipts after index |after| (absent: from the first); at most 19 digits, so
     * UINT64_MAX cannot be given and stands for "absent" */
    if (!filter_from(s, &f, contract, requester, city) ||
        !query_u64(s, "after", UINT64_MAX, &after) || !query_u64(s, "limit", 100, &limit)) {
        return;
    }
    uint64_t start = after == UINT64_MAX ? 0 : after + 1;
    if (limit == 0 || limit > PAGE_MAX) {
        gw_stream_error(s, 400, "bad_request", "limit must be 1..%d", PAGE_MAX);
        return;
    }
    uint64_t *idx = malloc((size_t)limit * sizeof(uint64_t));
    size_t n = 0;
    uint64_t next = 0;
    int rv = idx == NULL ? BG_ERR_NOMEM
                         : trust_ledger_query(l, &f, start, (size_t)limit, idx, &n, &next);
    if (rv != 0) {
        free(idx);
        unavailable(s, rv);
        return;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        trust_receipt r;
        bg_buf bytes;
        bg_buf_init(&bytes);
        if (trust_ledger_get(l, idx[i], &bytes, &r) == 0) {
            uint8_t leaf[TRUST_LEDGER_HASH_LEN];
            trust_ledger_leaf_hash(bytes.data, bytes.len, leaf);
            json_t *o = gw_receipt_json(&r);
            json_object_set_new(o, "leaf_hash", b64(leaf, sizeof(leaf)));
            json_array_append_new(a, o);
        }
        bg_buf_dispose(&bytes);
    }
    uint64_t last = n > 0 ? idx[n - 1] : 0;
    free(idx);
    json_t *j = json_pack("{s:o}", "receipts", a);
    if (n == (size_t)limit) { /* the next page: after=<the last index of this one> */
        json_object_set_new(j, "next", json_integer((json_int_t)last));
    }
    gw_stream_respond_json(s, 200, j);
}

static void export_receipts(gw_stream *s, trust_ledger *l)
{
    uint64_t size = 0, from, to;
    int rv = trust_ledger_size(l, &size);
    if (rv != 0) {
        unavailable(s, rv);
        return;
    }
    if (!query_u64(s, "from", 0, &from) || !query_u64(s, "to", size, &to)) {
        return;
    }
    if (to > size) {
        to = size;
    }
    if (from > to || to - from > EXPORT_MAX) {
        gw_stream_error(s, 400, "out_of_range",
                        "export takes index ranges [from, to) of at most %d receipts within "
                        "0..%llu", EXPORT_MAX, (unsigned long long)size);
        return;
    }
    bg_buf out;
    bg_buf_init(&out);
    for (uint64_t i = from; i < to; i++) {
        trust_receipt r;
        bg_buf bytes;
        bg_buf_init(&bytes);
        if (trust_ledger_get(l, i, &bytes, &r) != 0) {
            bg_buf_dispose(&bytes);
            bg_buf_dispose(&out);
            unavailable(s, BG_ERR_STORE);
            return;
        }
        json_t *o = gw_receipt_json(&r);
        json_object_set_new(o, "receipt_b64", b64(bytes.data, bytes.len));
        char *line = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        bg_buf_dispose(&bytes);
        if (line == NULL || bg_buf_append(&out, line, strlen(line)) != 0 ||
            bg_buf_append(&out, "\n", 1) != 0) {
            free(line);
            bg_buf_dispose(&out);
            gw_stream_error(s, 500, "internal", "out of memory");
            return;
        }
        free(line);
    }
    gw_stream_respond(s, 200, "application/x-ndjson", out.data, out.len);
    bg_buf_dispose(&out);
}

void gw_ledger_api(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    const trust_identity *id = &s->conn->id;
    const char *self = srv->cfg->city;
    if (strcmp(s->method, "GET") != 0) {
        gw_stream_error(s, 405, "method_not_allowed", "%s %s: use GET", s->method, s->path);
        return;
    }
    if (strcmp(id->role, "regulator") != 0 || strcmp(id->city, self) != 0) {
        gw_stream_error(s, 403, "forbidden",
                        "the ledger is read by regulators of %s (spiffe://%s.gba/regulator/...)",
                        self, self);
        return;
    }
    trust_ledger *l = srv->ledger;
    if (l == NULL) {
        gw_stream_error(s, 404, "no_ledger", "this gateway keeps no receipts ledger");
        return;
    }
    size_t n = strcspn(s->path, "?");
    char path[128];
    bg_strlcpy(path, s->path, n + 1 < sizeof(path) ? n + 1 : sizeof(path));
    bg_buf out;
    bg_buf_init(&out);
    int rv;
    if (strcmp(path, "/v1/ledger/checkpoint") == 0) {
        rv = trust_ledger_checkpoint_last(l, &out);
        if (rv == BG_ERR_NOTFOUND) {
            rv = trust_ledger_checkpoint_sign(l, self, &out, NULL); /* an empty ledger's */
        }
        trust_ledger_checkpoint cp;
        bg_buf key;
        bg_buf_init(&key);
        if (rv == 0 && trust_ledger_verifier_key(l, self, &key) == 0 &&
            bg_buf_append(&key, "", 1) == 0 &&
            trust_ledger_checkpoint_verify(out.data, out.len, (const char *)key.data, &cp) == 0) {
            rv = gw_witness_cosignatures(srv, cp.size, &out); /* the peers' cosignatures */
        }
        bg_buf_dispose(&key);
        if (rv != 0) {
            unavailable(s, rv);
        } else {
            gw_stream_respond(s, 200, "text/plain; charset=utf-8", out.data, out.len);
        }
    } else if (strcmp(path, "/v1/ledger/key") == 0) {
        if ((rv = trust_ledger_verifier_key(l, self, &out)) != 0 ||
            bg_buf_append(&out, "\n", 1) != 0) {
            unavailable(s, rv);
        } else {
            gw_stream_respond(s, 200, "text/plain; charset=utf-8", out.data, out.len);
        }
    } else if (strcmp(path, "/v1/ledger/consistency") == 0) {
        get_consistency(s, l);
    } else if (strcmp(path, "/v1/ledger/export") == 0) {
        export_receipts(s, l);
    } else if (strcmp(path, "/v1/receipts") == 0) {
        list_receipts(s, l);
    } else if (strncmp(path, "/v1/receipts/", 13) == 0) {
        get_receipt(s, l, path + 13);
    } else {
        gw_stream_error(s, 404, "not_found", "no such endpoint: %s", path);
    }
    bg_buf_dispose(&out);
}
