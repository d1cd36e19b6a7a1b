/* gateway/firms.c: onboarding over HTTP (docs/onboarding.md). A firm applies with a CSR
 * (POST /v1/firms, no certificate needed, rate-limited per source); this city's admin approves
 * or rejects, suspends, reinstates or revokes (POST /v1/firms/{id}/<action>); approval issues a
 * short-lived client certificate from the city CA (config `ca:`), which the firm fetches with
 * GET /v1/firms/{id}; the firm renews with its current certificate and a new CSR; GET /v1/crl
 * serves the CRL. Suspension and revocation take effect at once: the identity joins the
 * gateway's deny list (handshakes refused, open connections closed, requests refused). Every
 * decision is receipted. Who may call what is decided by the authorization table (authz.c)
 * before these run. Not for: the records and certificates themselves (trust/firms.h). */
#include "gateway/gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "trust/firms.h"

static json_t *firm_json(const trust_firm *f)
{
    json_t *purposes = json_array();
    for (size_t i = 0; i < f->app.npurposes; i++) {
        json_array_append_new(purposes, json_string(f->app.purposes[i]));
    }
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:I}", "id", f->id, "status",
                          trust_firm_status_name(f->status), "spiffe_id", f->spiffe_id, "name",
                          f->app.name, "registration_number", f->app.registration_number,
                          "jurisdiction", f->app.jurisdiction, "purposes", purposes, "created",
                          (json_int_t)f->created, "updated", (json_int_t)f->updated);
    if (j == NULL) {
        return NULL;
    }
    if (f->cert_pem != NULL) {
        json_object_set_new(j, "certificate", json_string(f->cert_pem));
        json_object_set_new(j, "certificate_serial", json_string(f->cert_serial));
        json_object_set_new(j, "certificate_not_after", json_integer(f->cert_not_after));
    }
    if (f->reason[0]) {
        json_object_set_new(j, "reason", json_string(f->reason));
    }
    return j;
}

/* Receipts an onboarding decision (kind TRUST_RECEIPT_IDENTITY_* or REFUSAL). */
static void firm_receipt(gw_stream *s, uint32_t kind, uint32_t decision, const trust_firm *f)
{
    trust_receipt r;
    memset(&r, 0, sizeof(r));
    r.kind = kind;
    r.decision = decision;
    bg_strlcpy(r.request_id, s->request_id, sizeof(r.request_id));
    bg_strlcpy(r.requester, f->spiffe_id, sizeof(r.requester));
    bg_strlcpy(r.home_city, s->conn->w->srv->cfg->city, sizeof(r.home_city));
    snprintf(r.operation, sizeof(r.operation), "firm %s by %s", trust_firm_status_name(f->status),
             s->conn->id.role[0] ? s->conn->id.role : "-");
    gw_receipts_event(s->conn->w, &r);
}

static void store_error(gw_stream *s, int rv, const bg_errbuf *eb, const char *id)
{
    switch (rv) {
    case BG_ERR_NOTFOUND:
        gw_stream_error(s, 404, "not_found", "no firm application %s", id);
        break;
    case BG_ERR_INVAL:
        gw_stream_error(s, 409, "invalid_transition", "%s", eb->msg[0] ? eb->msg : "not allowed");
        break;
    case BG_ERR_CERT:
        gw_stream_error(s, 503, "ca_unavailable", "the city CA cannot issue: %s", eb->msg);
        break;
    default:
        gw_stream_error(s, 503, "store_unavailable", "firms store: %s", bg_strerror(rv));
        break;
    }
}

static void apply(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    trust_firm_app app;
    bg_errbuf eb = {{0}};
    if (trust_firm_app_parse(s->body.data, s->body.len, &app, &eb) != 0) {
        gw_stream_error(s, 400, "invalid_application", "%s", eb.msg);
        return;
    }
    trust_firm f;
    memset(&f, 0, sizeof(f));
    int rv = trust_firms_apply(srv->firms, &app, srv->cfg->city, &f, &eb);
    trust_firm_app_dispose(&app);
    if (rv == BG_ERR_EXISTS) {
        gw_stream_error(s, 409, "duplicate_application",
                        "an application with this registration number exists already");
        return;
    }
    if (rv != 0) {
        store_error(s, rv, &eb, "");
        return;
    }
    bg_log(BG_LOG_INFO, "msg=\"firm applied\" id=%s spiffe_id=%s name=\"%s\"", f.id, f.spiffe_id,
           f.app.name);
    gw_stream_respond_json(s, 202, json_pack("{s:s,s:s,s:s}", "id", f.id, "status",
                                             trust_firm_status_name(f.status), "spiffe_id",
                                             f.spiffe_id));
    trust_firm_dispose(&f);
}

/* Optional {"reason": "...", "days": N, "csr": "..."} of an action; false when answered. */
static bool action_args(gw_stream *s, json_t **root, const char **reason, int *days,
                        const char **csr)
{
    *root = NULL;
    *reason = NULL;
    *days = 0;
    *csr = NULL;
    if (s->body.len == 0) {
        return true;
    }
    *root = json_loadb((const char *)s->body.data, s->body.len, 0, NULL);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        gw_stream_error(s, 400, "invalid_json", "the body is a JSON object {\"reason\", \"days\", "
                        "\"csr\"} or empty");
        return false;
    }
    *reason = json_string_value(json_object_get(*root, "reason"));
    *csr = json_string_value(json_object_get(*root, "csr"));
    json_t *d = json_object_get(*root, "days");
    if (d != NULL) {
        if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > 365) {
            json_decref(*root);
            *root = NULL;
            gw_stream_error(s, 400, "bad_request", "\"days\" must be 1..365");
            return false;
        }
        *days = (int)json_integer_value(d);
    }
    return true;
}

static void action(gw_stream *s, const char *id, const char *what)
{
    gw_server *srv = s->conn->w->srv;
    const conf_gateway *cfg = srv->cfg;
    json_t *root;
    const char *reason, *csr;
    int days;
    if (!action_args(s, &root, &reason, &days, &csr)) {
        return;
    }
    trust_firm f;
    memset(&f, 0, sizeof(f));
    bg_errbuf eb = {{0}};
    int rv;
    uint32_t kind = TRUST_RECEIPT_IDENTITY_ISSUED, decision = TRUST_RECEIPT_ALLOWED;
    bool need_ca = strcmp(what, "approve") == 0 || strcmp(what, "renew") == 0;
    if (need_ca && (cfg->ca.cert == NULL || cfg->ca.key == NULL)) {
        json_decref(root);
        gw_stream_error(s, 503, "ca_unavailable", "this gateway has no issuing CA (config ca:)");
        return;
    }
    if (strcmp(what, "approve") == 0) {
        rv = trust_firms_approve(srv->firms, id, cfg->ca.cert, cfg->ca.key,
                                 days ? days : (int)cfg->ca.firm_cert_days, &f, &eb);
    } else if (strcmp(what, "reject") == 0) {
        rv = trust_firms_reject(srv->firms, id, reason, &f, &eb);
        kind = TRUST_RECEIPT_REFUSAL;
        decision = TRUST_RECEIPT_REFUSED;
    } else if (strcmp(what, "suspend") == 0) {
        rv = trust_firms_suspend(srv->firms, id, reason, &f, &eb);
        kind = TRUST_RECEIPT_IDENTITY_REVOKED;
    } else if (strcmp(what, "revoke") == 0) {
        rv = trust_firms_revoke(srv->firms, id, reason, &f, &eb);
        kind = TRUST_RECEIPT_IDENTITY_REVOKED;
    } else if (strcmp(what, "reinstate") == 0) {
        rv = trust_firms_reinstate(srv->firms, id, &f, &eb);
    } else if (strcmp(what, "renew") == 0) {
        trust_firm cur;
        memset(&cur, 0, sizeof(cur));
        rv = trust_firms_get(srv->firms, id, &cur);
        if (rv == 0 && strcmp(cur.spiffe_id, s->conn->id.spiffe_id) != 0) {
            trust_firm_dispose(&cur);
            json_decref(root);
            gw_stream_error(s, 403, "forbidden", "a firm renews with its own certificate");
            return;
        }
        trust_firm_dispose(&cur);
        if (rv == 0 && csr == NULL) {
            json_decref(root);
            gw_stream_error(s, 400, "bad_request", "renew takes {\"csr\": \"<PEM>\"}");
            return;
        }
        if (rv == 0) {
            rv = trust_firms_renew(srv->firms, id, csr, cfg->ca.cert, cfg->ca.key,
                                   days ? days : (int)cfg->ca.firm_cert_days, &f, &eb);
        }
        kind = TRUST_RECEIPT_IDENTITY_RENEWED;
        if (rv == BG_ERR_INVAL && strncmp(eb.msg, "csr", 3) == 0) {
            json_decref(root);
            gw_stream_error(s, 400, "invalid_csr", "%s", eb.msg);
            return;
        }
        if (rv == BG_ERR_INVAL) { /* a suspended or revoked firm cannot renew */
            json_decref(root);
            gw_stream_error(s, 403, "forbidden", "%s", eb.msg);
            return;
        }
    } else {
        json_decref(root);
        gw_stream_error(s, 404, "not_found", "no such action: %s", what);
        return;
    }
    json_decref(root);
    if (rv != 0) {
        store_error(s, rv, &eb, id);
        return;
    }
    if (f.status == TRUST_FIRM_SUSPENDED || f.status == TRUST_FIRM_REVOKED) {
        gw_revoke_identity(srv, f.spiffe_id, f.cert_serial); /* at once, on every worker */
    } else if (strcmp(what, "reinstate") == 0) {
        gw_unrevoke_identity(srv, f.spiffe_id);
    }
    bg_log(BG_LOG_INFO, "msg=\"firm %s\" id=%s spiffe_id=%s by=\"%s\"", what, f.id, f.spiffe_id,
           s->conn->id.spiffe_id);
    firm_receipt(s, kind, decision, &f);
    gw_stream_respond_json(s, 200, firm_json(&f));
    trust_firm_dispose(&f);
}

void gw_firms_client(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    if (srv->firms == NULL) {
        gw_stream_error(s, 404, "no_onboarding", "this gateway does not onboard firms");
        return;
    }
    size_t n = strcspn(s->path, "?");
    char path[200];
    bg_strlcpy(path, s->path, n + 1 < sizeof(path) ? n + 1 : sizeof(path));
    if (strcmp(path, "/v1/firms") == 0) {
        if (strcmp(s->method, "POST") != 0) {
            gw_stream_error(s, 405, "method_not_allowed", "use POST to apply");
            return;
        }
        apply(s);
        return;
    }
    const char *rest = path + strlen("/v1/firms/");
    char id[TRUST_FIRM_ID_LEN + 8];
    size_t idl = strcspn(rest, "/");
    if (strncmp(path, "/v1/firms/", 10) != 0 || idl == 0 || idl >= sizeof(id)) {
        gw_stream_error(s, 404, "not_found", "no such endpoint: %s", path);
        return;
    }
    memcpy(id, rest, idl);
    id[idl] = 0;
    if (rest[idl] == 0) {
        if (strcmp(s->method, "GET") != 0) {
            gw_stream_error(s, 405, "method_not_allowed", "use GET");
            return;
        }
        trust_firm f;
        memset(&f, 0, sizeof(f));
        int rv = trust_firms_get(srv->firms, id, &f);
        if (rv != 0) {
            bg_errbuf eb = {{0}};
            store_error(s, rv, &eb, id);
            return;
        }
        gw_stream_respond_json(s, 200, firm_json(&f));
        trust_firm_dispose(&f);
        return;
    }
    if (strcmp(s->method, "POST") != 0) {
        gw_stream_error(s, 405, "method_not_allowed", "actions use POST");
        return;
    }
    action(s, id, rest + idl + 1);
}

void gw_firms_crl(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    const conf_gateway *cfg = srv->cfg;
    if (srv->firms == NULL || cfg->ca.cert == NULL || cfg->ca.key == NULL) {
        gw_stream_error(s, 404, "no_crl", "this gateway issues no certificates");
        return;
    }
    bg_buf pem;
    bg_buf_init(&pem);
    bg_errbuf eb = {{0}};
    int rv = trust_firms_crl(srv->firms, cfg->ca.cert, cfg->ca.key, 0, &pem, &eb);
    if (rv != 0) {
        store_error(s, rv, &eb, "");
    } else {
        gw_stream_respond(s, 200, "application/x-pem-file", pem.data, pem.len);
    }
    bg_buf_dispose(&pem);
}

/* Start-up: every unexpired certificate of a suspended or revoked firm joins the deny list. */
static int load_one(void *arg, const trust_firm_revocation *r)
{
    gw_revoke_identity(arg, r->spiffe_id, r->serial);
    return 0;
}

int gw_firms_open(gw_server *srv, bg_errbuf *eb)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/firms", srv->cfg->ledger_path);
    int rv = trust_firms_open(&srv->firms, dir, eb);
    if (rv == 0) {
        rv = trust_firms_revoked(srv->firms, 0, load_one, srv);
    }
    return rv;
}
