/* trust/contract.c: the contract model behind trust/contract.h. Plain-C bodies are mapped to
 * the protobuf-c messages of contract.proto only here, for the canonical encoding (what is
 * signed and hashed) and for the wire/storage form, and the gateways' signatures are made and
 * checked here with OpenSSL. Not for: translation, narrowing, storage or usage control. */
#include "trust/contract.h"

#include "base/utf8.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "contract.pb-c.h"
#include "base/ids.h"

/* Domain separation: a contract signature can never be replayed as a revocation, as some
 * other baygate signature, or across roles (home vs provider), and a format change gets a new
 * prefix rather than a silent reinterpretation. */
static const char contract_domain[] = "baygate-contract-v1\n";
static const char revocation_domain[] = "baygate-revocation-v1\n";
/* Chains are gateway leaf + city CA, with room for one intermediate (as trust/tls.c). */
#define VERIFY_DEPTH 4

typedef struct sig_rec {
    bool present;
    char *signer;
    char *algorithm;
    uint8_t *cert; /* DER */
    size_t cert_len;
    uint8_t *sig;
    size_t sig_len;
} sig_rec;

typedef struct rev_rec {
    char *contract_id;
    char *city;
    int64_t revoked_at;
    char *reason;
    sig_rec sig;
} rev_rec;

struct trust_contract {
    trust_contract_body body;
    char id[TRUST_CONTRACT_ID_LEN + 1];
    trust_contract_state state;
    sig_rec sigs[2]; /* [0] home, [1] provider */
    bool has_revocation;
    rev_rec rev;
    trust_revocation rev_view; /* borrowed pointers into |rev| */
    bool verified;
};

/* protobuf-c wants char *; it never writes through these. */
static char empty_str[1];

static char *str_or_empty(char *s)
{
    return s != NULL ? s : empty_str;
}

static bool is_empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

static const char *role_name(trust_contract_role role)
{
    return role == TRUST_CONTRACT_HOME ? "home" : "provider";
}

static sig_rec *role_sig(trust_contract *c, trust_contract_role role)
{
    return &c->sigs[role == TRUST_CONTRACT_HOME ? 0 : 1];
}

static const sig_rec *role_sig_c(const trust_contract *c, trust_contract_role role)
{
    return &c->sigs[role == TRUST_CONTRACT_HOME ? 0 : 1];
}

static bool role_valid(trust_contract_role role)
{
    return role == TRUST_CONTRACT_HOME || role == TRUST_CONTRACT_PROVIDER;
}

const char *trust_contract_state_name(trust_contract_state s)
{
    switch (s) {
    case TRUST_CONTRACT_REQUESTED:
        return "REQUESTED";
    case TRUST_CONTRACT_AGREED:
        return "AGREED";
    case TRUST_CONTRACT_FINALIZED:
        return "FINALIZED";
    case TRUST_CONTRACT_TERMINATED:
        return "TERMINATED";
    case TRUST_CONTRACT_REVOKED:
        return "REVOKED";
    case TRUST_CONTRACT_EXPIRED:
        return "EXPIRED";
    }
    return "?";
}

/* ---- Strings and lists ------------------------------------------------------------------ */

/* Terms are shown to people side by side; a control character or a broken sequence could make
 * two different terms look the same. */
static bool text_valid(const char *s, size_t n)
{
    return bg_utf8_valid((const uint8_t *)s, n, BG_UTF8_NO_CONTROLS);
}

/* Checks one string field; |required| makes NULL/"" an error. */
static int check_text(const char *field, const char *s, bool required, size_t max, bg_errbuf *eb)
{
    if (is_empty(s)) {
        return required ? bg_errf(eb, BG_ERR_INVAL, "contract: %s: missing", field) : 0;
    }
    size_t n = strlen(s);
    if (n > max) {
        return bg_errf(eb, BG_ERR_RANGE, "contract: %s: %zu bytes, more than %zu", field, n, max);
    }
    if (!text_valid(s, n)) {
        return bg_errf(eb, BG_ERR_INVAL,
                       "contract: %s: not UTF-8 text (broken sequence or control character)",
                       field);
    }
    return 0;
}

static int check_list(const char *field, char *const *v, size_t n, bg_errbuf *eb)
{
    if (n == 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: %s: empty", field);
    }
    if (n > TRUST_CONTRACT_MAX_LIST) {
        return bg_errf(eb, BG_ERR_RANGE, "contract: %s: %zu entries, more than %d", field, n,
                       TRUST_CONTRACT_MAX_LIST);
    }
    if (v == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: %s: NULL list", field);
    }
    for (size_t i = 0; i < n; i++) {
        char name[96];
        snprintf(name, sizeof(name), "%s[%zu]", field, i);
        int rc = check_text(name, v[i], true, TRUST_CONTRACT_MAX_STR, eb);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    const char *const *x = a;
    const char *const *y = b;
    return strcmp(*x, *y); /* compares as unsigned char: byte order */
}

/* A sorted, de-duplicated array of the |n| (borrowed) strings of |in|; caller frees the array
 * (not the strings). |n| is at most TRUST_CONTRACT_MAX_LIST (checked before). */
static int sorted_unique(char *const *in, size_t n, char ***out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (n == 0) {
        return 0;
    }
    char **v = malloc(n * sizeof(*v));
    if (v == NULL) {
        return BG_ERR_NOMEM;
    }
    memcpy(v, in, n * sizeof(*v));
    qsort(v, n, sizeof(*v), cmp_str);
    size_t k = 1;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(v[i], v[k - 1]) != 0) {
            v[k++] = v[i];
        }
    }
    *out = v;
    *nout = k;
    return 0;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

/* Duplicates |s|; NULL and "" become NULL (an absent optional field). */
static int dup_opt(char **out, const char *s)
{
    *out = NULL;
    if (is_empty(s)) {
        return 0;
    }
    *out = strdup(s);
    return *out != NULL ? 0 : BG_ERR_NOMEM;
}

static int dup_list(char ***out, size_t *nout, char *const *in, size_t n)
{
    *out = NULL;
    *nout = 0;
    if (n == 0) {
        return 0;
    }
    char **v = calloc(n, sizeof(*v));
    if (v == NULL) {
        return BG_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(in[i] != NULL ? in[i] : "");
        if (v[i] == NULL) {
            free_list(v, i);
            return BG_ERR_NOMEM;
        }
    }
    *out = v;
    *nout = n;
    return 0;
}

static void hex_encode(char *out, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* ---- Body ------------------------------------------------------------------------------- */

void trust_contract_body_init(trust_contract_body *b)
{
    memset(b, 0, sizeof(*b));
}

static void terms_dispose(trust_contract_terms *t)
{
    free(t->city);
    free(t->purpose);
    free_list(t->operations, t->noperations);
    free(t->legal_basis);
    memset(t, 0, sizeof(*t));
}

void trust_contract_body_dispose(trust_contract_body *b)
{
    if (b == NULL) {
        return;
    }
    free(b->requester);
    free(b->home_city);
    free(b->provider_city);
    free_list(b->datasets, b->ndatasets);
    free(b->purpose);
    free_list(b->operations, b->noperations);
    free(b->legal_basis);
    terms_dispose(&b->home_terms);
    terms_dispose(&b->provider_terms);
    free(b->nonce);
    trust_contract_body_init(b);
}

static int terms_copy(trust_contract_terms *dst, const trust_contract_terms *src)
{
    if (dup_opt(&dst->city, src->city) != 0 || dup_opt(&dst->purpose, src->purpose) != 0 ||
        dup_list(&dst->operations, &dst->noperations, src->operations, src->noperations) != 0 ||
        dup_opt(&dst->legal_basis, src->legal_basis) != 0) {
        return BG_ERR_NOMEM;
    }
    return 0;
}

int trust_contract_body_copy(trust_contract_body *dst, const trust_contract_body *src)
{
    trust_contract_body_init(dst);
    dst->valid_from = src->valid_from;
    dst->valid_until = src->valid_until;
    dst->min_cell_size = src->min_cell_size;
    dst->max_queries = src->max_queries;
    dst->has_epsilon = src->has_epsilon;
    dst->epsilon = src->has_epsilon ? src->epsilon : 0.0;
    dst->created_at = src->created_at;
    if (dup_opt(&dst->requester, src->requester) != 0 ||
        dup_opt(&dst->home_city, src->home_city) != 0 ||
        dup_opt(&dst->provider_city, src->provider_city) != 0 ||
        dup_list(&dst->datasets, &dst->ndatasets, src->datasets, src->ndatasets) != 0 ||
        dup_opt(&dst->purpose, src->purpose) != 0 ||
        dup_list(&dst->operations, &dst->noperations, src->operations, src->noperations) != 0 ||
        dup_opt(&dst->legal_basis, src->legal_basis) != 0 ||
        terms_copy(&dst->home_terms, &src->home_terms) != 0 ||
        terms_copy(&dst->provider_terms, &src->provider_terms) != 0 ||
        dup_opt(&dst->nonce, src->nonce) != 0) {
        trust_contract_body_dispose(dst);
        return BG_ERR_NOMEM;
    }
    return 0;
}

static bool terms_present(const trust_contract_terms *t)
{
    return !is_empty(t->city);
}

static int check_terms(const char *which, const trust_contract_terms *t, const char *city,
                       bg_errbuf *eb)
{
    char f[64];
    int rc;
    if (!terms_present(t)) {
        /* Absent terms must be wholly absent: the encoding drops them, and two different
         * bodies must never share an id. */
        if (!is_empty(t->purpose) || t->noperations > 0 || !is_empty(t->legal_basis)) {
            return bg_errf(eb, BG_ERR_INVAL, "contract: %s.city: missing", which);
        }
        return 0;
    }
    if (strcmp(t->city, city) != 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: %s.city: \"%.64s\" is not the contract's %s",
                       which, t->city, city);
    }
    snprintf(f, sizeof(f), "%s.purpose", which);
    if ((rc = check_text(f, t->purpose, true, TRUST_CONTRACT_MAX_STR, eb)) != 0) {
        return rc;
    }
    snprintf(f, sizeof(f), "%s.operations", which);
    if ((rc = check_list(f, t->operations, t->noperations, eb)) != 0) {
        return rc;
    }
    snprintf(f, sizeof(f), "%s.legal_basis", which);
    return check_text(f, t->legal_basis, false, TRUST_CONTRACT_MAX_STR, eb);
}

static bool city_valid(const char *s)
{
    return s != NULL && bg_city_id_valid(s, strlen(s));
}

int trust_contract_body_check(const trust_contract_body *b, bool complete, bg_errbuf *eb)
{
    int rc;
    char city[BG_CITY_MAX + 1];

    if (b == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: no body");
    }
    if (!city_valid(b->home_city)) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: home_city: missing or not a city id");
    }
    if (!city_valid(b->provider_city)) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: provider_city: missing or not a city id");
    }
    if (strcmp(b->home_city, b->provider_city) == 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: provider_city: same as home_city \"%s\"",
                       b->home_city);
    }
    if ((rc = check_text("requester", b->requester, true, TRUST_CONTRACT_MAX_STR, eb)) != 0) {
        return rc;
    }
    if (trust_spiffe_parse(b->requester, city, sizeof(city), NULL, 0) != 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: requester: \"%.128s\" is not a SPIFFE id",
                       b->requester);
    }
    if (strcmp(city, b->home_city) != 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: requester: \"%.128s\" is not of home city %s",
                       b->requester, b->home_city);
    }
    if ((rc = check_list("datasets", b->datasets, b->ndatasets, eb)) != 0) {
        return rc;
    }
    size_t plen = strlen(b->provider_city);
    for (size_t i = 0; i < b->ndatasets; i++) {
        const char *d = b->datasets[i];
        if (strncmp(d, b->provider_city, plen) != 0 || d[plen] != '/' || d[plen + 1] == '\0' ||
            strchr(d + plen + 1, '/') != NULL) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "contract: datasets[%zu]: \"%.128s\" is not \"%s/<name>\"", i, d,
                           b->provider_city);
        }
    }
    if ((rc = check_text("purpose", b->purpose, true, TRUST_CONTRACT_MAX_STR, eb)) != 0 ||
        (rc = check_list("operations", b->operations, b->noperations, eb)) != 0 ||
        (rc = check_text("legal_basis", b->legal_basis, false, TRUST_CONTRACT_MAX_STR, eb)) != 0) {
        return rc;
    }
    if (b->valid_from < 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: valid_from: negative");
    }
    if (b->valid_until <= b->valid_from) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: valid_until: not after valid_from");
    }
    if (b->created_at < 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: created_at: negative");
    }
    if (b->min_cell_size < 1) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: constraints.min_cell_size: must be >= 1");
    }
    if (b->has_epsilon && (!isfinite(b->epsilon) || !(b->epsilon > 0.0))) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: constraints.epsilon: must be finite and > 0");
    }
    if (!terms_present(&b->home_terms)) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: home_terms: missing");
    }
    if ((rc = check_terms("home_terms", &b->home_terms, b->home_city, eb)) != 0 ||
        (rc = check_terms("provider_terms", &b->provider_terms, b->provider_city, eb)) != 0) {
        return rc;
    }
    if (complete && !terms_present(&b->provider_terms)) {
        return bg_errf(eb, BG_ERR_INVAL,
                       "contract: provider_terms: missing (required once the body is signed)");
    }
    if (!is_empty(b->nonce)) {
        size_t n = strlen(b->nonce);
        if (n > TRUST_CONTRACT_MAX_STR) {
            return bg_errf(eb, BG_ERR_RANGE, "contract: nonce: more than %d bytes",
                           TRUST_CONTRACT_MAX_STR);
        }
        for (size_t i = 0; i < n; i++) {
            if (b->nonce[i] <= 0x20 || b->nonce[i] >= 0x7f) {
                return bg_errf(eb, BG_ERR_INVAL, "contract: nonce: not printable ASCII");
            }
        }
    }
    return 0;
}

/* The protobuf-c view of a body: strings borrowed from the body, sorted arrays owned. */
typedef struct body_pb {
    Baygate__ContractBody msg;
    Baygate__Constraints cons;
    Baygate__Terms home;
    Baygate__Terms provider;
} body_pb;

static void body_pb_dispose(body_pb *p)
{
    free(p->msg.datasets);
    free(p->msg.operations);
    free(p->home.operations);
    free(p->provider.operations);
}

static int terms_pb(Baygate__Terms *pt, const trust_contract_terms *t)
{
    pt->city = str_or_empty(t->city);
    pt->purpose = str_or_empty(t->purpose);
    pt->legal_basis = str_or_empty(t->legal_basis);
    return sorted_unique(t->operations, t->noperations, &pt->operations, &pt->n_operations);
}

/* Fills |p| from a checked body |b|; on failure |p| is still safe to dispose. */
static int body_pb_fill(body_pb *p, const trust_contract_body *b)
{
    baygate__contract_body__init(&p->msg);
    baygate__constraints__init(&p->cons);
    baygate__terms__init(&p->home);
    baygate__terms__init(&p->provider);
    p->msg.requester = str_or_empty(b->requester);
    p->msg.home_city = str_or_empty(b->home_city);
    p->msg.provider_city = str_or_empty(b->provider_city);
    p->msg.purpose = str_or_empty(b->purpose);
    p->msg.legal_basis = str_or_empty(b->legal_basis);
    p->msg.valid_from = b->valid_from;
    p->msg.valid_until = b->valid_until;
    p->msg.nonce = str_or_empty(b->nonce);
    p->msg.created_at = b->created_at;
    p->cons.min_cell_size = b->min_cell_size;
    p->cons.max_queries = b->max_queries;
    p->cons.has_epsilon = b->has_epsilon;
    p->cons.epsilon = b->has_epsilon ? b->epsilon : 0.0;
    p->msg.constraints = &p->cons;
    p->msg.home_terms = &p->home;
    p->msg.provider_terms = terms_present(&b->provider_terms) ? &p->provider : NULL;
    if (sorted_unique(b->datasets, b->ndatasets, &p->msg.datasets, &p->msg.n_datasets) != 0 ||
        sorted_unique(b->operations, b->noperations, &p->msg.operations, &p->msg.n_operations) !=
            0 ||
        terms_pb(&p->home, &b->home_terms) != 0 ||
        terms_pb(&p->provider, &b->provider_terms) != 0) {
        return BG_ERR_NOMEM;
    }
    return 0;
}

/* Packs |msg| and appends it to |out|, within |max| bytes. */
static int pack_append(const ProtobufCMessage *msg, bg_buf *out, size_t max, const char *what,
                       bg_errbuf *eb)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > max) {
        return bg_errf(eb, BG_ERR_RANGE, "contract: %s: encodes to %zu bytes, more than %zu", what,
                       n, max);
    }
    uint8_t *tmp = malloc(n > 0 ? n : 1);
    if (tmp == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
    }
    size_t got = protobuf_c_message_pack(msg, tmp);
    assert(got == n);
    (void)got;
    int rc = bg_buf_append(out, tmp, n);
    free(tmp);
    if (rc != 0) {
        return bg_errf(eb, rc, "contract: out of memory");
    }
    return 0;
}

int trust_contract_body_encode(const trust_contract_body *b, bg_buf *out, bg_errbuf *eb)
{
    int rc = trust_contract_body_check(b, false, eb);
    if (rc != 0) {
        return rc;
    }
    body_pb p;
    memset(&p, 0, sizeof(p));
    if ((rc = body_pb_fill(&p, b)) != 0) {
        rc = bg_errf(eb, rc, "contract: out of memory");
    } else {
        rc = pack_append(&p.msg.base, out, TRUST_CONTRACT_MAX_BYTES, "body", eb);
    }
    body_pb_dispose(&p);
    return rc;
}

static int sha256_hex(const uint8_t *p, size_t n, char id[TRUST_CONTRACT_ID_LEN + 1], bg_errbuf *eb)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        ERR_clear_error();
        return bg_errf(eb, BG_ERR_NOMEM, "contract: SHA-256 failed");
    }
    hex_encode(id, md, mdlen);
    return 0;
}

int trust_contract_body_id(const trust_contract_body *b, char id[TRUST_CONTRACT_ID_LEN + 1],
                           bg_errbuf *eb)
{
    bg_buf buf;
    bg_buf_init(&buf);
    int rc = trust_contract_body_encode(b, &buf, eb);
    if (rc == 0) {
        rc = sha256_hex(buf.data, buf.len, id, eb);
    }
    bg_buf_dispose(&buf);
    return rc;
}

/* ---- Contract --------------------------------------------------------------------------- */

static void sig_dispose(sig_rec *s)
{
    free(s->signer);
    free(s->algorithm);
    free(s->cert);
    free(s->sig);
    memset(s, 0, sizeof(*s));
}

static void rev_dispose(rev_rec *r)
{
    free(r->contract_id);
    free(r->city);
    free(r->reason);
    sig_dispose(&r->sig);
    memset(r, 0, sizeof(*r));
}

static trust_contract *contract_alloc(void)
{
    trust_contract *c = calloc(1, sizeof(*c));
    if (c != NULL) {
        trust_contract_body_init(&c->body);
        c->state = TRUST_CONTRACT_REQUESTED;
    }
    return c;
}

void trust_contract_free(trust_contract *c)
{
    if (c == NULL) {
        return;
    }
    trust_contract_body_dispose(&c->body);
    sig_dispose(&c->sigs[0]);
    sig_dispose(&c->sigs[1]);
    rev_dispose(&c->rev);
    free(c);
}

int trust_contract_new(trust_contract **out, const trust_contract_body *body, bg_errbuf *eb)
{
    int rc = trust_contract_body_check(body, false, eb);
    if (rc != 0) {
        return rc;
    }
    trust_contract *c = contract_alloc();
    if (c == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
    }
    if (trust_contract_body_copy(&c->body, body) != 0) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
        goto fail_free;
    }
    if ((rc = trust_contract_body_id(&c->body, c->id, eb)) != 0) {
        goto fail_free;
    }
    *out = c;
    return 0;

fail_free:
    trust_contract_free(c);
    return rc;
}

const trust_contract_body *trust_contract_get_body(const trust_contract *c)
{
    return &c->body;
}

const char *trust_contract_get_id(const trust_contract *c)
{
    return c->id;
}

trust_contract_state trust_contract_get_state(const trust_contract *c)
{
    return c->state;
}

bool trust_contract_has_signature(const trust_contract *c, trust_contract_role role)
{
    return role_valid(role) && role_sig_c(c, role)->present;
}

const char *trust_contract_get_signer(const trust_contract *c, trust_contract_role role)
{
    if (!trust_contract_has_signature(c, role)) {
        return NULL;
    }
    return role_sig_c(c, role)->signer;
}

const trust_revocation *trust_contract_get_revocation(const trust_contract *c)
{
    return c->has_revocation ? &c->rev_view : NULL;
}

static void rev_view_update(trust_contract *c)
{
    c->rev_view.contract_id = c->rev.contract_id;
    c->rev_view.city = c->rev.city;
    c->rev_view.revoked_at = c->rev.revoked_at;
    c->rev_view.reason = c->rev.reason != NULL ? c->rev.reason : "";
    c->rev_view.signer = c->rev.sig.signer;
}

/* The format's rule tying a state to the signatures it needs (see contract.h). Without it, a
 * state flipped in storage or transit would pass every signature check. */
static int state_check(const trust_contract *c, bg_errbuf *eb)
{
    bool h = c->sigs[0].present;
    bool p = c->sigs[1].present;
    const char *name = trust_contract_state_name(c->state);
    bool ok;
    switch (c->state) {
    case TRUST_CONTRACT_REQUESTED:
        ok = !p;
        break;
    case TRUST_CONTRACT_AGREED:
        ok = p && !h;
        break;
    case TRUST_CONTRACT_FINALIZED:
    case TRUST_CONTRACT_EXPIRED:
        ok = h && p;
        break;
    case TRUST_CONTRACT_TERMINATED:
        ok = !(h && p);
        break;
    case TRUST_CONTRACT_REVOKED:
        ok = h && p;
        if (ok && !c->has_revocation) {
            return bg_errf(eb, BG_ERR_INVAL, "contract: state REVOKED without a revocation");
        }
        break;
    default:
        return bg_errf(eb, BG_ERR_INVAL, "contract: state: unknown value %d", (int)c->state);
    }
    if (!ok) {
        return bg_errf(eb, BG_ERR_INVAL,
                       "contract: state %s does not match its signatures (home %s, provider %s)",
                       name, h ? "signed" : "unsigned", p ? "signed" : "unsigned");
    }
    if (c->has_revocation && c->state != TRUST_CONTRACT_REVOKED) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: revocation present in state %s", name);
    }
    if (h || p) {
        return trust_contract_body_check(&c->body, true, eb);
    }
    return 0;
}

static void sig_pb(Baygate__Signature *ps, const sig_rec *s)
{
    baygate__signature__init(ps);
    ps->signer = str_or_empty(s->signer);
    ps->algorithm = str_or_empty(s->algorithm);
    ps->certificate.data = s->cert;
    ps->certificate.len = s->cert_len;
    ps->signature.data = s->sig;
    ps->signature.len = s->sig_len;
}

static void rev_pb(Baygate__Revocation *pr, const rev_rec *r)
{
    baygate__revocation__init(pr);
    pr->contract_id = str_or_empty(r->contract_id);
    pr->city = str_or_empty(r->city);
    pr->revoked_at = r->revoked_at;
    pr->reason = str_or_empty(r->reason);
}

int trust_contract_encode(const trust_contract *c, bg_buf *out, bg_errbuf *eb)
{
    body_pb bp;
    Baygate__Contract msg;
    Baygate__Signature home, provider, revsig;
    Baygate__Revocation rev;
    memset(&bp, 0, sizeof(bp));
    int rc = body_pb_fill(&bp, &c->body);
    if (rc != 0) {
        body_pb_dispose(&bp);
        return bg_errf(eb, rc, "contract: out of memory");
    }
    baygate__contract__init(&msg);
    msg.body = &bp.msg;
    msg.id = (char *)c->id;
    msg.state = (Baygate__ContractState)c->state;
    if (c->sigs[0].present) {
        sig_pb(&home, &c->sigs[0]);
        msg.home_signature = &home;
    }
    if (c->sigs[1].present) {
        sig_pb(&provider, &c->sigs[1]);
        msg.provider_signature = &provider;
    }
    if (c->has_revocation) {
        rev_pb(&rev, &c->rev);
        sig_pb(&revsig, &c->rev.sig);
        rev.signature = &revsig;
        msg.revocation = &rev;
    }
    rc = pack_append(&msg.base, out, TRUST_CONTRACT_MAX_BYTES, "contract", eb);
    body_pb_dispose(&bp);
    return rc;
}

/* ---- Decoding ----------------------------------------------------------------------------- */

static int terms_from_pb(trust_contract_terms *t, const Baygate__Terms *pt, const char *which,
                         bg_errbuf *eb)
{
    if (pt == NULL) {
        return 0;
    }
    if (pt->base.n_unknown_fields > 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: %s: unknown fields", which);
    }
    if (pt->n_operations > TRUST_CONTRACT_MAX_LIST) {
        return bg_errf(eb, BG_ERR_RANGE, "contract: %s.operations: more than %d entries", which,
                       TRUST_CONTRACT_MAX_LIST);
    }
    if (dup_opt(&t->city, pt->city) != 0 || dup_opt(&t->purpose, pt->purpose) != 0 ||
        dup_list(&t->operations, &t->noperations, pt->operations, pt->n_operations) != 0 ||
        dup_opt(&t->legal_basis, pt->legal_basis) != 0) {
        return bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
    }
    if (!terms_present(t)) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: %s.city: missing", which);
    }
    return 0;
}

static int body_from_pb(trust_contract_body *b, const Baygate__ContractBody *m, bg_errbuf *eb)
{
    int rc;
    if (m->base.n_unknown_fields > 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: body: unknown fields");
    }
    if (m->constraints == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: constraints: missing");
    }
    if (m->constraints->base.n_unknown_fields > 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: constraints: unknown fields");
    }
    if (m->home_terms == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: home_terms: missing");
    }
    if (m->n_datasets > TRUST_CONTRACT_MAX_LIST || m->n_operations > TRUST_CONTRACT_MAX_LIST) {
        return bg_errf(eb, BG_ERR_RANGE, "contract: datasets or operations: more than %d entries",
                       TRUST_CONTRACT_MAX_LIST);
    }
    if (!m->constraints->has_epsilon && m->constraints->epsilon != 0.0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: constraints.epsilon: set without has_epsilon");
    }
    b->valid_from = m->valid_from;
    b->valid_until = m->valid_until;
    b->created_at = m->created_at;
    b->min_cell_size = m->constraints->min_cell_size;
    b->max_queries = m->constraints->max_queries;
    b->has_epsilon = m->constraints->has_epsilon;
    b->epsilon = m->constraints->epsilon;
    if (dup_opt(&b->requester, m->requester) != 0 || dup_opt(&b->home_city, m->home_city) != 0 ||
        dup_opt(&b->provider_city, m->provider_city) != 0 ||
        dup_list(&b->datasets, &b->ndatasets, m->datasets, m->n_datasets) != 0 ||
        dup_opt(&b->purpose, m->purpose) != 0 ||
        dup_list(&b->operations, &b->noperations, m->operations, m->n_operations) != 0 ||
        dup_opt(&b->legal_basis, m->legal_basis) != 0 || dup_opt(&b->nonce, m->nonce) != 0) {
        return bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
    }
    if ((rc = terms_from_pb(&b->home_terms, m->home_terms, "home_terms", eb)) != 0 ||
        (rc = terms_from_pb(&b->provider_terms, m->provider_terms, "provider_terms", eb)) != 0) {
        return rc;
    }
    return 0;
}

static bool algorithm_known(const char *a)
{
    return a != NULL && (strcmp(a, "ecdsa-p256-sha256") == 0 ||
                         strcmp(a, "ecdsa-p384-sha384") == 0 || strcmp(a, "ed25519") == 0);
}

static int sig_from_pb(sig_rec *s, const Baygate__Signature *ps, const char *which, bg_errbuf *eb)
{
    int rc;
    if (ps->base.n_unknown_fields > 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: %s: unknown fields", which);
    }
    char f[64];
    snprintf(f, sizeof(f), "%s.signer", which);
    if ((rc = check_text(f, ps->signer, true, TRUST_CONTRACT_MAX_STR, eb)) != 0) {
        return rc;
    }
    if (!algorithm_known(ps->algorithm)) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: %s.algorithm: unknown \"%.32s\"", which,
                       ps->algorithm != NULL ? ps->algorithm : "");
    }
    if (ps->certificate.len == 0 || ps->certificate.len > TRUST_CONTRACT_MAX_CERT) {
        return bg_errf(eb, BG_ERR_RANGE, "contract: %s.certificate: %zu bytes, want 1..%d", which,
                       ps->certificate.len, TRUST_CONTRACT_MAX_CERT);
    }
    if (ps->signature.len == 0 || ps->signature.len > TRUST_CONTRACT_MAX_SIG) {
        return bg_errf(eb, BG_ERR_RANGE, "contract: %s.signature: %zu bytes, want 1..%d", which,
                       ps->signature.len, TRUST_CONTRACT_MAX_SIG);
    }
    s->signer = strdup(ps->signer);
    s->algorithm = strdup(ps->algorithm);
    s->cert = malloc(ps->certificate.len);
    s->sig = malloc(ps->signature.len);
    if (s->signer == NULL || s->algorithm == NULL || s->cert == NULL || s->sig == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
    }
    memcpy(s->cert, ps->certificate.data, ps->certificate.len);
    s->cert_len = ps->certificate.len;
    memcpy(s->sig, ps->signature.data, ps->signature.len);
    s->sig_len = ps->signature.len;
    s->present = true;
    return 0;
}

static bool id_syntax_valid(const char *id)
{
    if (id == NULL || strlen(id) != TRUST_CONTRACT_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < TRUST_CONTRACT_ID_LEN; i++) {
        char ch = id[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
            return false;
        }
    }
    return true;
}

static int rev_from_pb(trust_contract *c, const Baygate__Revocation *pr, bg_errbuf *eb)
{
    int rc;
    if (pr->base.n_unknown_fields > 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: revocation: unknown fields");
    }
    if (!id_syntax_valid(pr->contract_id) || strcmp(pr->contract_id, c->id) != 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: revocation.contract_id: not this contract");
    }
    if (!city_valid(pr->city)) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: revocation.city: missing or not a city id");
    }
    if (pr->revoked_at < 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: revocation.revoked_at: negative");
    }
    if ((rc = check_text("revocation.reason", pr->reason, false, TRUST_CONTRACT_MAX_REASON, eb)) !=
        0) {
        return rc;
    }
    if (pr->signature == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: revocation.signature: missing");
    }
    c->rev.revoked_at = pr->revoked_at;
    if (dup_opt(&c->rev.contract_id, pr->contract_id) != 0 ||
        dup_opt(&c->rev.city, pr->city) != 0 || dup_opt(&c->rev.reason, pr->reason) != 0) {
        return bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
    }
    if ((rc = sig_from_pb(&c->rev.sig, pr->signature, "revocation.signature", eb)) != 0) {
        return rc;
    }
    c->has_revocation = true;
    rev_view_update(c);
    return 0;
}

static int contract_from_pb(trust_contract *c, const Baygate__Contract *m, bg_errbuf *eb)
{
    int rc;
    if (m->base.n_unknown_fields > 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: unknown fields");
    }
    if (m->body == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: body: missing");
    }
    if ((rc = body_from_pb(&c->body, m->body, eb)) != 0 ||
        (rc = trust_contract_body_check(&c->body, false, eb)) != 0) {
        return rc;
    }
    if (!id_syntax_valid(m->id)) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: id: not 64 lowercase hex characters");
    }
    if ((rc = trust_contract_body_id(&c->body, c->id, eb)) != 0) {
        return rc;
    }
    if (strcmp(c->id, m->id) != 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: id: %.64s is not the digest of the body (%s)",
                       m->id, c->id);
    }
    if (m->state < (int)TRUST_CONTRACT_REQUESTED || m->state > (int)TRUST_CONTRACT_EXPIRED) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: state: unknown value %d", (int)m->state);
    }
    c->state = (trust_contract_state)m->state;
    if (m->home_signature != NULL &&
        (rc = sig_from_pb(&c->sigs[0], m->home_signature, "home_signature", eb)) != 0) {
        return rc;
    }
    if (m->provider_signature != NULL &&
        (rc = sig_from_pb(&c->sigs[1], m->provider_signature, "provider_signature", eb)) != 0) {
        return rc;
    }
    if (m->revocation != NULL && (rc = rev_from_pb(c, m->revocation, eb)) != 0) {
        return rc;
    }
    return state_check(c, eb);
}

int trust_contract_decode(trust_contract **out, const uint8_t *data, size_t len, bg_errbuf *eb)
{
    int rc;
    if (data == NULL || len == 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: empty input");
    }
    if (len > TRUST_CONTRACT_MAX_BYTES) {
        return bg_errf(eb, BG_ERR_RANGE, "contract: %zu bytes, more than %d", len,
                       TRUST_CONTRACT_MAX_BYTES);
    }
    Baygate__Contract *m = baygate__contract__unpack(NULL, len, data);
    if (m == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: not a well-formed protobuf Contract");
    }
    trust_contract *c = contract_alloc();
    if (c == NULL) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
        goto fail_unpack;
    }
    if ((rc = contract_from_pb(c, m, eb)) != 0) {
        goto fail_free;
    }
    /* Only the canonical encoding is accepted: re-encode and compare. This rejects duplicate
     * or reordered fields, non-minimal varints, unsorted lists, strings cut by an embedded NUL
     * and every other way of spelling the same contract twice, so one contract has exactly one
     * byte form and any changed byte changes what was decoded. */
    bg_buf again;
    bg_buf_init(&again);
    rc = trust_contract_encode(c, &again, eb);
    if (rc == 0 && (again.len != len || memcmp(again.data, data, len) != 0)) {
        rc = bg_errf(eb, BG_ERR_INVAL, "contract: not in canonical encoding");
    }
    bg_buf_dispose(&again);
    if (rc != 0) {
        goto fail_free;
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
    *out = c;
    return 0;

fail_free:
    trust_contract_free(c);
fail_unpack:
    protobuf_c_message_free_unpacked(&m->base, NULL);
    return rc;
}

/* ---- Signing and verifying ---------------------------------------------------------------- */

static int contract_message(const trust_contract *c, trust_contract_role role, bg_buf *msg,
                            bg_errbuf *eb)
{
    char r[16];
    int n = snprintf(r, sizeof(r), "%s\n", role_name(role));
    if (bg_buf_append(msg, contract_domain, sizeof(contract_domain) - 1) != 0 ||
        bg_buf_append(msg, r, (size_t)n) != 0) {
        return bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
    }
    return trust_contract_body_encode(&c->body, msg, eb);
}

static int revocation_message(const rev_rec *r, bg_buf *msg, bg_errbuf *eb)
{
    Baygate__Revocation pr;
    rev_pb(&pr, r);
    if (bg_buf_append(msg, revocation_domain, sizeof(revocation_domain) - 1) != 0) {
        return bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
    }
    return pack_append(&pr.base, msg, TRUST_CONTRACT_MAX_BYTES, "revocation", eb);
}

/* Signs |msg| as |t|'s gateway for |city| into a fresh |s|. */
static int sign_as(sig_rec *s, trust_tls *t, const char *city, const char *what, const bg_buf *msg,
                   bg_errbuf *eb)
{
    char want[BG_CITY_MAX + 32];
    char have[256];
    int rc;
    snprintf(want, sizeof(want), "spiffe://%s.gba/gateway", city);
    if (trust_tls_spiffe_id(t, have, sizeof(have)) != 0) {
        return bg_errf(eb, BG_ERR_IDENTITY, "contract: %s: our certificate has no SPIFFE id", what);
    }
    if (strcmp(have, want) != 0) {
        return bg_errf(eb, BG_ERR_IDENTITY, "contract: %s: we are %s, the signer must be %s", what,
                       have, want);
    }
    const char *alg = trust_tls_sign_algorithm(t);
    if (alg == NULL) {
        return bg_errf(eb, BG_ERR_TLS, "contract: %s: gateway key cannot sign", what);
    }
    bg_buf cert, sig;
    bg_buf_init(&cert);
    bg_buf_init(&sig);
    if ((rc = trust_tls_cert_der(t, &cert)) != 0) {
        rc = bg_errf(eb, rc, "contract: %s: cannot encode our certificate", what);
        goto done;
    }
    if ((rc = trust_tls_sign(t, msg->data, msg->len, &sig, eb)) != 0) {
        goto done;
    }
    s->signer = strdup(have);
    s->algorithm = strdup(alg);
    if (s->signer == NULL || s->algorithm == NULL) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
        goto done;
    }
    /* Hand the buffers over (bg_buf data is malloc'd). */
    s->cert = cert.data;
    s->cert_len = cert.len;
    s->sig = sig.data;
    s->sig_len = sig.len;
    bg_buf_init(&cert);
    bg_buf_init(&sig);
    s->present = true;
done:
    bg_buf_dispose(&cert);
    bg_buf_dispose(&sig);
    return rc;
}

int trust_contract_sign(trust_contract *c, trust_contract_role role, trust_tls *t, bg_errbuf *eb)
{
    int rc;
    if (!role_valid(role)) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: sign: unknown role %d", (int)role);
    }
    if (c->state != TRUST_CONTRACT_REQUESTED && c->state != TRUST_CONTRACT_AGREED) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: sign: state %s cannot be signed",
                       trust_contract_state_name(c->state));
    }
    if ((rc = trust_contract_body_check(&c->body, true, eb)) != 0) {
        return rc;
    }
    const char *city = role == TRUST_CONTRACT_HOME ? c->body.home_city : c->body.provider_city;
    char what[32];
    snprintf(what, sizeof(what), "%s signature", role_name(role));
    bg_buf msg;
    bg_buf_init(&msg);
    sig_rec s;
    memset(&s, 0, sizeof(s));
    if ((rc = contract_message(c, role, &msg, eb)) == 0 &&
        (rc = sign_as(&s, t, city, what, &msg, eb)) == 0) {
        sig_rec *slot = role_sig(c, role);
        sig_dispose(slot);
        *slot = s;
        memset(&s, 0, sizeof(s));
        bool h = c->sigs[0].present;
        bool p = c->sigs[1].present;
        c->state = h && p ? TRUST_CONTRACT_FINALIZED
                          : (p ? TRUST_CONTRACT_AGREED : TRUST_CONTRACT_REQUESTED);
        c->verified = false;
    }
    sig_dispose(&s);
    bg_buf_dispose(&msg);
    return rc;
}

/* Copies the first spiffe:// URI SAN of |cert| into |id| ("" when none or too long). Same
 * rule as trust/tls.c reads a peer's identity with. */
static void cert_spiffe(X509 *cert, char *id, size_t cap)
{
    id[0] = '\0';
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) {
        ERR_clear_error();
        return;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI) {
            continue;
        }
        const char *d = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        int n = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (d == NULL || n < 9 || (size_t)n >= cap || memchr(d, '\0', (size_t)n) != NULL ||
            strncmp(d, "spiffe://", 9) != 0) {
            continue;
        }
        memcpy(id, d, (size_t)n);
        id[n] = '\0';
        break;
    }
    GENERAL_NAMES_free(names);
}

/* Verifies one signature record |s| over |msg| as the gateway of |city| (see
 * trust_contract_verify() for the rules). |what| names it in errors. */
static int verify_sig(const sig_rec *s, trust_tls *t, const char *city, int64_t now,
                      const bg_buf *msg, const char *what, bg_errbuf *eb)
{
    char want[BG_CITY_MAX + 32];
    char got[256];
    char ossl[256];
    int rc = 0;
    X509 *cert = NULL;
    X509_STORE_CTX *sctx = NULL;
    EVP_MD_CTX *mctx = NULL;

    snprintf(want, sizeof(want), "spiffe://%s.gba/gateway", city);
    if (s->signer == NULL || strcmp(s->signer, want) != 0) {
        return bg_errf(eb, BG_ERR_IDENTITY, "contract: %s: signer %.128s is not %s", what,
                       s->signer != NULL ? s->signer : "(none)", want);
    }
    if (!algorithm_known(s->algorithm)) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: %s: unknown algorithm", what);
    }
    /* Strict DER: the bytes must be exactly one certificate in its own re-encoding, so the
     * certificate field has one byte form too. */
    const unsigned char *p = s->cert;
    if (s->cert_len > TRUST_CONTRACT_MAX_CERT ||
        (cert = d2i_X509(NULL, &p, (long)s->cert_len)) == NULL ||
        (size_t)(p - s->cert) != s->cert_len) {
        ERR_clear_error();
        rc = bg_errf(eb, BG_ERR_CERT, "contract: %s: certificate is not one DER certificate", what);
        goto done;
    }
    unsigned char *der = NULL;
    int dlen = i2d_X509(cert, &der);
    bool same = dlen > 0 && (size_t)dlen == s->cert_len && memcmp(der, s->cert, s->cert_len) == 0;
    OPENSSL_free(der);
    if (!same) {
        ERR_clear_error();
        rc = bg_errf(eb, BG_ERR_CERT, "contract: %s: certificate is not in DER", what);
        goto done;
    }
    cert_spiffe(cert, got, sizeof(got));
    if (strcmp(got, want) != 0) {
        rc = bg_errf(eb, BG_ERR_IDENTITY, "contract: %s: certificate SAN is %s, not %s", what,
                     got[0] != '\0' ? got : "(no SPIFFE id)", want);
        goto done;
    }
    /* Chain to the trust bundle, at |now| rather than the wall clock, so the result is the
     * same for the same inputs. */
    sctx = X509_STORE_CTX_new();
    if (sctx == NULL || X509_STORE_CTX_init(sctx, trust_tls_trust_store(t), cert, NULL) != 1) {
        ERR_clear_error();
        rc = bg_errf(eb, BG_ERR_NOMEM, "contract: %s: out of memory", what);
        goto done;
    }
    X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(sctx);
    X509_VERIFY_PARAM_set_time(vp, (time_t)now);
    X509_VERIFY_PARAM_set_depth(vp, VERIFY_DEPTH);
    if (X509_verify_cert(sctx) != 1) {
        int err = X509_STORE_CTX_get_error(sctx);
        ERR_clear_error();
        rc = bg_errf(eb, BG_ERR_CERT,
                     "contract: %s: certificate of %s does not chain to the trust bundle (%s)",
                     what, want, X509_verify_cert_error_string(err));
        goto done;
    }
    /* The bundle holds every city's CA. A city's CA speaks for its own city only: the anchor
     * must name spiffe://<city>.gba, or Hong Kong's CA could mint Guangzhou's gateway. */
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(sctx);
    int depth = chain != NULL ? sk_X509_num(chain) : 0;
    char anchor[256];
    char want_ca[BG_CITY_MAX + 16];
    snprintf(want_ca, sizeof(want_ca), "spiffe://%s.gba", city);
    anchor[0] = '\0';
    if (depth > 0) {
        cert_spiffe(sk_X509_value(chain, depth - 1), anchor, sizeof(anchor));
    }
    if (strcmp(anchor, want_ca) != 0) {
        rc =
            bg_errf(eb, BG_ERR_IDENTITY, "contract: %s: certificate issued by the CA of %s, not %s",
                    what, anchor[0] != '\0' ? anchor : "(unnamed trust domain)", want_ca);
        goto done;
    }
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    const char *alg = trust_key_algorithm(pub);
    if (alg == NULL || strcmp(alg, s->algorithm) != 0) {
        ERR_clear_error();
        rc = bg_errf(eb, BG_ERR_CERT, "contract: %s: algorithm %s does not match the key (%s)",
                     what, s->algorithm, alg != NULL ? alg : "unsupported");
        goto done;
    }
    const EVP_MD *md = NULL;
    if (strcmp(alg, "ecdsa-p256-sha256") == 0) {
        md = EVP_sha256();
    } else if (strcmp(alg, "ecdsa-p384-sha384") == 0) {
        md = EVP_sha384();
    }
    mctx = EVP_MD_CTX_new();
    if (mctx == NULL) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "contract: %s: out of memory", what);
        goto done;
    }
    if (EVP_DigestVerifyInit(mctx, NULL, md, NULL, pub) != 1) {
        trust_tls_errors(ossl, sizeof(ossl));
        rc = bg_errf(eb, BG_ERR_CERT, "contract: %s: cannot verify with %s (%s)", what, alg, ossl);
        goto done;
    }
    if (EVP_DigestVerify(mctx, s->sig, s->sig_len, msg->data, msg->len) != 1) {
        ERR_clear_error();
        rc = bg_errf(eb, BG_ERR_CERT, "contract: %s: signature by %s does not verify", what, want);
        goto done;
    }
done:
    EVP_MD_CTX_free(mctx);
    X509_STORE_CTX_free(sctx);
    X509_free(cert);
    return rc;
}

int trust_contract_verify(trust_contract *c, trust_tls *t, int64_t now, bg_errbuf *eb)
{
    int rc;
    c->verified = false;
    if ((rc = state_check(c, eb)) != 0) {
        return rc;
    }
    if (c->state == TRUST_CONTRACT_EXPIRED && now < c->body.valid_until) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: state EXPIRED before valid_until");
    }
    static const trust_contract_role roles[] = {TRUST_CONTRACT_HOME, TRUST_CONTRACT_PROVIDER};
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        const sig_rec *s = role_sig_c(c, roles[i]);
        if (!s->present) {
            continue;
        }
        const char *city =
            roles[i] == TRUST_CONTRACT_HOME ? c->body.home_city : c->body.provider_city;
        char what[32];
        snprintf(what, sizeof(what), "%s signature", role_name(roles[i]));
        bg_buf msg;
        bg_buf_init(&msg);
        if ((rc = contract_message(c, roles[i], &msg, eb)) == 0) {
            rc = verify_sig(s, t, city, now, &msg, what, eb);
        }
        bg_buf_dispose(&msg);
        if (rc != 0) {
            return rc;
        }
    }
    if (c->has_revocation) {
        if (strcmp(c->rev.contract_id, c->id) != 0) {
            return bg_errf(eb, BG_ERR_INVAL, "contract: revocation: names another contract");
        }
        if (strcmp(c->rev.city, c->body.home_city) != 0 &&
            strcmp(c->rev.city, c->body.provider_city) != 0) {
            return bg_errf(eb, BG_ERR_IDENTITY,
                           "contract: revocation: %s is neither the home nor the provider city",
                           c->rev.city);
        }
        bg_buf msg;
        bg_buf_init(&msg);
        if ((rc = revocation_message(&c->rev, &msg, eb)) == 0) {
            rc = verify_sig(&c->rev.sig, t, c->rev.city, now, &msg, "revocation signature", eb);
        }
        bg_buf_dispose(&msg);
        if (rc != 0) {
            return rc;
        }
    }
    c->verified = true;
    return 0;
}

bool trust_contract_is_verified(const trust_contract *c)
{
    return c->verified;
}

int trust_contract_set_state(trust_contract *c, trust_contract_state state, int64_t now,
                             bg_errbuf *eb)
{
    bool ok = false;
    switch (state) {
    case TRUST_CONTRACT_TERMINATED:
        ok = c->state == TRUST_CONTRACT_REQUESTED || c->state == TRUST_CONTRACT_AGREED;
        break;
    case TRUST_CONTRACT_EXPIRED:
        ok = c->state == TRUST_CONTRACT_FINALIZED && now >= c->body.valid_until;
        break;
    default:
        break;
    }
    if (!ok) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: cannot move from %s to %s",
                       trust_contract_state_name(c->state), trust_contract_state_name(state));
    }
    c->state = state;
    c->verified = false;
    return 0;
}

int trust_contract_revoke(trust_contract *c, trust_tls *t, int64_t now, const char *reason,
                          bg_errbuf *eb)
{
    int rc;
    if (c->state != TRUST_CONTRACT_FINALIZED && c->state != TRUST_CONTRACT_EXPIRED) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: revoke: state %s cannot be revoked",
                       trust_contract_state_name(c->state));
    }
    if (now < 0) {
        return bg_errf(eb, BG_ERR_INVAL, "contract: revoke: negative time");
    }
    if ((rc = check_text("revocation.reason", reason, false, TRUST_CONTRACT_MAX_REASON, eb)) != 0) {
        return rc;
    }
    char have[256];
    char city[BG_CITY_MAX + 1];
    if (trust_tls_spiffe_id(t, have, sizeof(have)) != 0 ||
        trust_spiffe_parse(have, city, sizeof(city), NULL, 0) != 0) {
        return bg_errf(eb, BG_ERR_IDENTITY, "contract: revoke: our certificate has no SPIFFE id");
    }
    if (strcmp(city, c->body.home_city) != 0 && strcmp(city, c->body.provider_city) != 0) {
        return bg_errf(eb, BG_ERR_IDENTITY,
                       "contract: revoke: %s is neither the home nor the provider city", city);
    }
    rev_rec r;
    memset(&r, 0, sizeof(r));
    r.revoked_at = now;
    bg_buf msg;
    bg_buf_init(&msg);
    if (dup_opt(&r.contract_id, c->id) != 0 || dup_opt(&r.city, city) != 0 ||
        dup_opt(&r.reason, reason) != 0) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "contract: out of memory");
    } else if ((rc = revocation_message(&r, &msg, eb)) == 0) {
        rc = sign_as(&r.sig, t, city, "revocation signature", &msg, eb);
    }
    bg_buf_dispose(&msg);
    if (rc != 0) {
        rev_dispose(&r);
        return rc;
    }
    rev_dispose(&c->rev);
    c->rev = r;
    c->has_revocation = true;
    rev_view_update(c);
    c->state = TRUST_CONTRACT_REVOKED;
    c->verified = false;
    return 0;
}
