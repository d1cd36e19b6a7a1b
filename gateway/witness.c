/* gateway/witness.c: cities witness each other's ledgers. Every few seconds a gateway shows each
 * peer its latest signed checkpoint, with a consistency proof from the size that peer last
 * cosigned (POST /fed/v1/witness). The peer verifies the note with the key it pinned for that
 * city on first sight, verifies consistency with the checkpoint of that city it holds, stores
 * the new one and answers its cosignature (C2SP tlog-cosignature); the checkpoint regulators
 * read (GET /v1/ledger/checkpoint) carries the cosignatures held for its size. Two checkpoints
 * of one city that cannot both be true (a smaller size than one already seen, the same size
 * with another root, a failed consistency proof, another key) are a split view: both are kept
 * as evidence (<ledger.path>/witness/<city>.split), an alarm is logged and counted, and traffic
 * with that city stops until an operator removes the evidence file and sends SIGHUP. The
 * pinned key and the checkpoint held are written (and synced) on the ledger's writer thread
 * before the cosignature is answered, never on an event loop.
 * Not for: the ledger itself (trust/ledger.h). Files: <ledger.path>/witness/<city>.{note,key}. */
#include "gateway/gw_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base/log.h"
#include "trust/b64.h"
#include "trust/ledger.h"

#define WITNESS_PEERS_MAX 64
#define WITNESS_NOTE_MAX 4096

typedef struct witness_peer {
    char city[64];
    /* as sender: what this peer cosigned of ours */
    uint64_t cosigned_size; /* the size it last cosigned (our next proof starts there) */
    char cosig[512];        /* its cosignature line for |cosigned_size| */
    /* as witness: */
    bool blocked;           /* a split view was seen: no traffic */
} witness_peer;

struct gw_witness {
    pthread_mutex_t mu;
    char dir[4096];
    witness_peer peer[WITNESS_PEERS_MAX];
    size_t npeers;
    uint64_t split_views;
};

static witness_peer *peer_of(gw_witness *wt, const char *city, bool create)
{
    for (size_t i = 0; i < wt->npeers; i++) {
        if (strcmp(wt->peer[i].city, city) == 0) {
            return &wt->peer[i];
        }
    }
    if (!create || wt->npeers == WITNESS_PEERS_MAX) {
        return NULL;
    }
    witness_peer *p = &wt->peer[wt->npeers++];
    memset(p, 0, sizeof(*p));
    bg_strlcpy(p->city, city, sizeof(p->city));
    return p;
}

static void path_of(const gw_witness *wt, const char *city, const char *ext, char *out,
                    size_t cap)
{
    snprintf(out, cap, "%s/%s.%s", wt->dir, city, ext);
}

/* Reads a small file into |out| (NUL-terminated); false when absent or unreadable. */
static bool read_small(const char *path, bg_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return false;
    }
    char buf[WITNESS_NOTE_MAX * 2 + 1024];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return bg_buf_append(out, buf, n) == 0 && bg_buf_append(out, "", 1) == 0 &&
           (out->len--, true);
}

/* Replaces |path| with |len| bytes atomically (write a temporary file, fsync, rename). */
static int write_atomic(const char *path, const void *data, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return BG_ERR_IO;
    }
    bool ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return BG_ERR_IO;
    }
    return 0;
}

int gw_witness_new(gw_server *srv, bg_errbuf *eb)
{
    gw_witness *wt = calloc(1, sizeof(*wt));
    if (wt == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&wt->mu, NULL);
    snprintf(wt->dir, sizeof(wt->dir), "%s/witness", srv->cfg->ledger_path);
    if (mkdir(wt->dir, 0700) != 0 && errno != EEXIST) {
        pthread_mutex_destroy(&wt->mu);
        free(wt);
        return bg_errf(eb, BG_ERR_IO, "%s: %s", srv->cfg->ledger_path, strerror(errno));
    }
    srv->witness = wt;
    gw_witness_reload(srv);
    return 0;
}

void gw_witness_free(gw_server *srv)
{
    gw_witness *wt = srv->witness;
    if (wt != NULL) {
        pthread_mutex_destroy(&wt->mu);
        free(wt);
        srv->witness = NULL;
    }
}

void gw_witness_reload(gw_server *srv)
{
    gw_witness *wt = srv->witness;
    if (wt == NULL) {
        return;
    }
    const conf_gateway *cfg = srv->cfg;
    pthread_mutex_lock(&wt->mu);
    for (size_t i = 0; i < cfg->npeers; i++) {
        peer_of(wt, cfg->peers[i].name, true);
    }
    for (size_t i = 0; i < wt->npeers; i++) {
        char path[4200];
        path_of(wt, wt->peer[i].city, "split", path, sizeof(path));
        bool was = wt->peer[i].blocked;
        wt->peer[i].blocked = access(path, F_OK) == 0;
        if (was && !wt->peer[i].blocked) {
            bg_log(BG_LOG_WARN, "msg=\"split view cleared by the operator\" city=%s",
                   wt->peer[i].city);
        }
    }
    pthread_mutex_unlock(&wt->mu);
}

bool gw_witness_blocked(gw_server *srv, const char *city)
{
    gw_witness *wt = srv->witness;
    if (wt == NULL) {
        return false;
    }
    pthread_mutex_lock(&wt->mu);
    witness_peer *p = peer_of(wt, city, false);
    bool b = p != NULL && p->blocked;
    pthread_mutex_unlock(&wt->mu);
    return b;
}

uint64_t gw_witness_split_views(gw_server *srv)
{
    gw_witness *wt = srv->witness;
    uint64_t n = 0;
    if (wt != NULL) {
        pthread_mutex_lock(&wt->mu);
        n = wt->split_views;
        pthread_mutex_unlock(&wt->mu);
    }
    return n;
}

int gw_witness_cosignatures(gw_server *srv, uint64_t size, bg_buf *out)
{
    gw_witness *wt = srv->witness;
    if (wt == NULL) {
        return 0;
    }
    int rv = 0;
    pthread_mutex_lock(&wt->mu);
    for (size_t i = 0; i < wt->npeers && rv == 0; i++) {
        if (wt->peer[i].cosig[0] && wt->peer[i].cosigned_size == size) {
            rv = bg_buf_append(out, wt->peer[i].cosig, strlen(wt->peer[i].cosig));
        }
    }
    pthread_mutex_unlock(&wt->mu);
    return rv;
}

/* ---- as witness: /fed/v1/witness from a peer ------------------------------------------------ */

/* Keeps both checkpoints as evidence, raises the alarm and blocks |city|. Caller holds mu. */
static void split_view(gw_witness *wt, witness_peer *p, const char *why, const bg_buf *held,
                       const char *shown)
{
    char path[4200];
    path_of(wt, p->city, "split", path, sizeof(path));
    bg_buf ev;
    bg_buf_init(&ev);
    char when[40];
    bg_wall_iso8601(when, sizeof(when));
    bg_buf_appendf(&ev, "split view of %s detected %s: %s\n\n--- checkpoint held ---\n%s\n"
                        "--- checkpoint shown ---\n%s\n",
                   p->city, when, why, held != NULL && held->len ? (const char *)held->data : "-",
                   shown);
    if (write_atomic(path, ev.data, ev.len) != 0) {
        bg_log(BG_LOG_ERROR, "msg=\"cannot store split-view evidence\" path=%s", path);
    }
    bg_buf_dispose(&ev);
    p->blocked = true;
    wt->split_views++;
    bg_log(BG_LOG_ERROR, "msg=\"ALARM: split view\" city=%s why=\"%s\" evidence=%s "
                         "action=\"traffic with %s stopped; remove the evidence file and send "
                         "SIGHUP to resume\"",
           p->city, why, path, p->city);
}

/* Cosigns checkpoint |note| of tree size |size| (the note up to its blank line) and answers
 * |s| with the cosignature and this city's witness key. */
static void cosign_and_answer(gw_stream *s, const char *note, uint64_t size)
{
    gw_server *srv = s->conn->w->srv;
    const char *blank = strstr(note, "\n\n");
    size_t tlen = blank != NULL ? (size_t)(blank - note) + 1 : strlen(note);
    char wname[TRUST_LEDGER_ORIGIN_MAX + 16];
    snprintf(wname, sizeof(wname), "%s.gba/baygate/witness", srv->cfg->city);
    bg_buf line, wkey;
    bg_buf_init(&line);
    bg_buf_init(&wkey);
    int rv = trust_ledger_cosign(srv->ledger, wname, (const uint8_t *)note, tlen,
                                 (uint64_t)time(NULL), &line);
    if (rv == 0) {
        rv = trust_ledger_witness_key(srv->ledger, wname, &wkey);
    }
    if (rv != 0 || bg_buf_append(&line, "", 1) != 0 || bg_buf_append(&wkey, "", 1) != 0) {
        bg_buf_dispose(&line);
        bg_buf_dispose(&wkey);
        gw_stream_error(s, 503, "witness_unavailable", "cannot cosign: %s", bg_strerror(rv));
        return;
    }
    gw_stream_respond_json(s, 200, json_pack("{s:s,s:s,s:I}", "cosignature", (char *)line.data,
                                             "witness_key", (char *)wkey.data, "size",
                                             (json_int_t)size));
    bg_buf_dispose(&line);
    bg_buf_dispose(&wkey);
}

/* The files a witnessed checkpoint needs written before it is cosigned, on the ledger's
 * writer thread (gw_receipts_store_job); everything it reads is its own copy. */
typedef struct witness_job {
    gw_store_job base;
    gw_stream *s; /* NULL once the stream went away */
    char *note, *key;
    bool pin_key, store_note;
    uint64_t size;
    char city[64];
    char kpath[4200], npath[4200];
    int rv; /* out */
} witness_job;

static void witness_job_free(witness_job *j)
{
    if (j != NULL) {
        free(j->note);
        free(j->key);
        free(j);
    }
}

static void witness_job_detach(void *p)
{
    ((witness_job *)p)->s = NULL; /* freed when it comes back */
}

static void witness_job_run(gw_store_job *b)
{
    witness_job *j = (witness_job *)(void *)b;
    if (j->pin_key && write_atomic(j->kpath, j->key, strlen(j->key)) != 0) {
        bg_log(BG_LOG_ERROR, "msg=\"cannot pin ledger key\" city=%s", j->city);
    }
    j->rv = j->store_note ? write_atomic(j->npath, j->note, strlen(j->note)) : 0;
}

static void witness_job_done(gw_job *b)
{
    witness_job *j = (witness_job *)(void *)b;
    gw_stream *s = j->s;
    if (s != NULL) {
        s->ctx = NULL;
        s->ctx_free = NULL;
        if (j->rv != 0) {
            bg_strlcpy(s->err_code, "witness_unavailable", sizeof(s->err_code));
            gw_stream_error(s, 503, "witness_unavailable", "cannot store the checkpoint");
        } else {
            cosign_and_answer(s, j->note, j->size);
        }
    }
    witness_job_free(j);
}

static void witness_job_discard(gw_job *b)
{
    witness_job_free((witness_job *)(void *)b);
}

void gw_witness_fed(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    gw_witness *wt = srv->witness;
    const char *city = s->conn->id.city;
    json_t *root = json_loadb((const char *)s->body.data, s->body.len, 0, NULL);
    const char *note = json_string_value(json_object_get(root, "checkpoint"));
    const char *key = json_string_value(json_object_get(root, "key"));
    json_t *proof = json_object_get(root, "proof");
    const json_t *first_j = json_object_get(proof, "first");
    json_t *hashes = json_object_get(proof, "hashes");
    if (wt == NULL || srv->ledger == NULL) {
        json_decref(root);
        gw_stream_error(s, 404, "no_ledger", "this gateway witnesses no ledger");
        return;
    }
    if (note == NULL || key == NULL || !json_is_integer(first_j) || !json_is_array(hashes) ||
        strlen(note) > WITNESS_NOTE_MAX || strlen(key) > 300 ||
        json_array_size(hashes) > TRUST_LEDGER_PROOF_MAX) {
        json_decref(root);
        gw_stream_error(s, 400, "bad_request", "a witness request is {\"checkpoint\": note, "
                        "\"key\": vkey, \"proof\": {\"first\": m, \"hashes\": [...]}}");
        return;
    }
    uint64_t first = (uint64_t)json_integer_value(first_j);
    trust_ledger_checkpoint cp;
    char origin[TRUST_LEDGER_ORIGIN_MAX + 1];
    trust_ledger_origin(city, origin, sizeof(origin));
    pthread_mutex_lock(&wt->mu);
    witness_peer *p = peer_of(wt, city, true);
    char kpath[4200], npath[4200];
    path_of(wt, city, "key", kpath, sizeof(kpath));
    path_of(wt, city, "note", npath, sizeof(npath));
    bg_buf pinned, held;
    bg_buf_init(&pinned);
    bg_buf_init(&held);
    int status = 200;
    const char *code = NULL;
    char msg[300] = "";
    bool pin_key = false, store_note = false; /* files to write before cosigning */
    if (p == NULL) {
        status = 503;
        code = "overloaded";
        snprintf(msg, sizeof(msg), "too many witnessed cities");
    } else if (p->blocked) {
        status = 403;
        code = "peer_split_view";
        snprintf(msg, sizeof(msg), "%s showed a split view; traffic is stopped", city);
    } else if (read_small(kpath, &pinned) && strcmp((const char *)pinned.data, key) != 0) {
        split_view(wt, p, "the ledger key changed", NULL, key);
        status = 409;
        code = "split_view";
        snprintf(msg, sizeof(msg), "%s's ledger key differs from the one pinned", city);
    } else if (trust_ledger_checkpoint_verify((const uint8_t *)note, strlen(note), key, &cp) != 0 ||
               strcmp(cp.origin, origin) != 0) {
        status = 400;
        code = "bad_checkpoint";
        snprintf(msg, sizeof(msg), "the checkpoint does not verify as %s's", origin);
    } else {
        pin_key = pinned.len == 0;
        trust_ledger_checkpoint old;
        bool have = read_small(npath, &held) &&
                    trust_ledger_checkpoint_verify(held.data, held.len, key, &old) == 0;
        uint8_t (*ph)[TRUST_LEDGER_HASH_LEN] = calloc(TRUST_LEDGER_PROOF_MAX,
                                                      TRUST_LEDGER_HASH_LEN);
        size_t np = 0;
        bool proof_ok = ph != NULL;
        for (size_t i = 0; proof_ok && i < json_array_size(hashes); i++) {
            const char *h = json_string_value(json_array_get(hashes, i));
            size_t n = 0;
            proof_ok = h != NULL &&
                       trust_b64_decode(h, strlen(h), ph[np], TRUST_LEDGER_HASH_LEN, &n) &&
                       n == TRUST_LEDGER_HASH_LEN;
            np++;
        }
        if (!proof_ok) {
            status = 400;
            code = "bad_proof";
            snprintf(msg, sizeof(msg), "malformed consistency proof");
        } else if (have && cp.size < old.size) {
            split_view(wt, p, "a smaller tree than one already cosigned (rolled back)", &held,
                       note);
            status = 409;
            code = "split_view";
        } else if (have && cp.size == old.size && memcmp(cp.root, old.root, 32) != 0) {
            split_view(wt, p, "two different roots for the same tree size", &held, note);
            status = 409;
            code = "split_view";
        } else if (have && cp.size > old.size && first != old.size) {
            status = 409;
            code = "stale_proof";
            snprintf(msg, sizeof(msg), "prove consistency from size %llu",
                     (unsigned long long)old.size);
        } else if (have && cp.size > old.size &&
                   trust_ledger_verify_consistency(old.size, cp.size, old.root, cp.root,
                                                   (const uint8_t (*)[32])ph, np) != 0) {
            split_view(wt, p, "the new checkpoint is not consistent with the one held", &held,
                       note);
            status = 409;
            code = "split_view";
        }
        free(ph);
        store_note = status == 200 && (!have || cp.size > old.size);
        if (code != NULL && strcmp(code, "split_view") == 0) {
            snprintf(msg, sizeof(msg), "%s showed checkpoints that cannot both be true; evidence "
                     "kept and traffic stopped", city);
        }
    }
    pthread_mutex_unlock(&wt->mu);
    bg_buf_dispose(&pinned);
    bg_buf_dispose(&held);
    if (status != 200) {
        json_t *e = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
        if (code != NULL && strcmp(code, "stale_proof") == 0) {
            trust_ledger_checkpoint o2;
            bg_buf h2;
            bg_buf_init(&h2);
            if (read_small(npath, &h2) &&
                trust_ledger_checkpoint_verify(h2.data, h2.len, key, &o2) == 0) {
                json_object_set_new(e, "have", json_integer((json_int_t)o2.size));
            }
            bg_buf_dispose(&h2);
        }
        json_decref(root);
        bg_strlcpy(s->err_code, code, sizeof(s->err_code));
        gw_stream_respond_json(s, status, e);
        return;
    }
    if (!pin_key && !store_note) {
        cosign_and_answer(s, note, cp.size);
        json_decref(root);
        return;
    }
    /* the pinned key and the checkpoint now held are written (and synced) on the ledger's
     * writer thread, so this loop never waits for the disk; the cosignature follows */
    witness_job *j = calloc(1, sizeof(*j));
    size_t nlen = strlen(note), klen = strlen(key);
    if (j == NULL || (j->note = malloc(nlen + 1)) == NULL || (j->key = malloc(klen + 1)) == NULL) {
        witness_job_free(j);
        json_decref(root);
        gw_stream_error(s, 503, "witness_unavailable", "out of memory");
        return;
    }
    memcpy(j->note, note, nlen + 1);
    memcpy(j->key, key, klen + 1);
    json_decref(root);
    j->pin_key = pin_key;
    j->store_note = store_note;
    j->size = cp.size;
    bg_strlcpy(j->city, city, sizeof(j->city));
    bg_strlcpy(j->kpath, kpath, sizeof(j->kpath));
    bg_strlcpy(j->npath, npath, sizeof(j->npath));
    j->s = s;
    s->ctx = j;
    s->ctx_free = witness_job_detach;
    j->base.w = s->conn->w;
    j->base.run = witness_job_run;
    j->base.job.deliver = witness_job_done;
    j->base.job.discard = witness_job_discard;
    gw_receipts_store_job(srv, &j->base);
}

/* ---- as the witnessed: show our checkpoint to every peer ------------------------------------ */

typedef struct show_leg {
    gw_leg leg;
    gw_worker *w;
    char city[64];
    uint64_t size;
    struct show_leg *next;
} show_leg;

static void show_done(gw_leg *leg, int status, const char *ctype_or_code, const char *msg,
                      const uint8_t *body, size_t len)
{
    show_leg *l = (show_leg *)(void *)leg;
    gw_worker *w = l->w;
    gw_witness *wt = w->srv->witness;
    (void)ctype_or_code;
    (void)msg;
    json_t *j = status != 0 ? json_loadb((const char *)body, len, 0, NULL) : NULL;
    pthread_mutex_lock(&wt->mu);
    witness_peer *p = peer_of(wt, l->city, true);
    const char *line = json_string_value(json_object_get(j, "cosignature"));
    if (p != NULL && status == 200 && line != NULL && strlen(line) < sizeof(p->cosig)) {
        p->cosigned_size = l->size;
        bg_strlcpy(p->cosig, line, sizeof(p->cosig));
    } else if (p != NULL && status == 409) {
        const char *code =
            json_string_value(json_object_get(json_object_get(j, "error"), "code"));
        const json_t *have = json_object_get(j, "have");
        if (code != NULL && strcmp(code, "stale_proof") == 0 && json_is_integer(have)) {
            p->cosigned_size = (uint64_t)json_integer_value(have); /* next round proves from it */
            p->cosig[0] = 0;
        } else {
            bg_log(BG_LOG_ERROR, "msg=\"a witness refused our checkpoint\" witness=%s code=%s",
                   l->city, code != NULL ? code : "-");
        }
    }
    pthread_mutex_unlock(&wt->mu);
    json_decref(j);
    show_leg **pp = (show_leg **)&w->witness_legs;
    while (*pp != NULL && *pp != l) {
        pp = &(*pp)->next;
    }
    if (*pp == l) {
        *pp = l->next;
    }
    free(l);
}

static void show_round(gw_worker *w)
{
    gw_server *srv = w->srv;
    gw_witness *wt = srv->witness;
    const conf_gateway *cfg = w->gen->cfg;
    bg_buf note, key;
    bg_buf_init(&note);
    bg_buf_init(&key);
    trust_ledger_checkpoint cp;
    if (trust_ledger_checkpoint_last(srv->ledger, &note) != 0 ||
        trust_ledger_verifier_key(srv->ledger, srv->cfg->city, &key) != 0 ||
        bg_buf_append(&key, "", 1) != 0 ||
        trust_ledger_checkpoint_verify(note.data, note.len, (const char *)key.data, &cp) != 0) {
        bg_buf_dispose(&note);
        bg_buf_dispose(&key);
        return;
    }
    for (size_t i = 0; i < cfg->npeers && i < w->npeers; i++) {
        const char *city = cfg->peers[i].name;
        if (gw_client_get_state(w->peers[i]) != GW_CLIENT_CONNECTED ||
            gw_witness_blocked(srv, city)) {
            continue;
        }
        pthread_mutex_lock(&wt->mu);
        witness_peer *p = peer_of(wt, city, true);
        uint64_t first = p != NULL ? p->cosigned_size : 0;
        bool current = p != NULL && p->cosig[0] && p->cosigned_size == cp.size;
        pthread_mutex_unlock(&wt->mu);
        if (current || first > cp.size) {
            continue; /* already cosigned (or the witness is confused: it will say so) */
        }
        trust_ledger_proof *pr = malloc(sizeof(*pr));
        if (pr == NULL || trust_ledger_consistency_proof(srv->ledger, first, cp.size, pr) != 0) {
            free(pr);
            continue;
        }
        json_t *hs = json_array();
        for (size_t k = 0; k < pr->len; k++) {
            char b[64];
            EVP_EncodeBlock((unsigned char *)b, pr->hash[k], TRUST_LEDGER_HASH_LEN);
            json_array_append_new(hs, json_string(b));
        }
        free(pr);
        bg_buf_append(&note, "", 1);
        note.len--;
        json_t *body = json_pack("{s:s,s:s,s:{s:I,s:o}}", "checkpoint", (char *)note.data, "key",
                                 (char *)key.data, "proof", "first", (json_int_t)first, "hashes",
                                 hs);
        char *txt = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        show_leg *l = txt != NULL ? calloc(1, sizeof(*l)) : NULL;
        if (l == NULL) {
            free(txt);
            continue;
        }
        l->w = w;
        l->size = cp.size;
        bg_strlcpy(l->city, city, sizeof(l->city));
        l->leg.done = show_done;
        bg_strlcpy(l->leg.path, "/fed/v1/witness", sizeof(l->leg.path));
        gw_worker_new_request_id(w, l->leg.request_id);
        bg_strlcpy(l->leg.hops, srv->cfg->city, sizeof(l->leg.hops));
        bg_strlcpy(l->leg.dest, city, sizeof(l->leg.dest));
        bg_strlcpy(l->leg.ctype, "application/json", sizeof(l->leg.ctype));
        l->next = w->witness_legs;
        w->witness_legs = l;
        gw_client_leg(w->peers[i], &l->leg, (const uint8_t *)txt, strlen(txt));
        free(txt);
    }
    bg_buf_dispose(&note);
    bg_buf_dispose(&key);
}

/* Worker 0's witnessing timer. */
static void on_show(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    (void)fd;
    (void)what;
    w->witness_armed = false;
    if (w->draining) {
        return;
    }
    show_round(w);
    struct timeval tv = {GW_WITNESS_INTERVAL_MS / 1000, (GW_WITNESS_INTERVAL_MS % 1000) * 1000};
    w->witness_armed = evtimer_add(&w->witness_ev, &tv) == 0;
    gw_worker_run_deferred(w);
}

void gw_witness_worker_init(gw_worker *w)
{
    if (w->idx != 0 || w->srv->witness == NULL || w->srv->ledger == NULL) {
        return; /* one worker shows the checkpoints */
    }
    evtimer_assign(&w->witness_ev, w->base, on_show, w);
    struct timeval tv = {0, 500 * 1000};
    w->witness_armed = evtimer_add(&w->witness_ev, &tv) == 0;
}

void gw_witness_worker_dispose(gw_worker *w)
{
    if (w->witness_armed) {
        event_del(&w->witness_ev);
        w->witness_armed = false;
    }
    while (w->witness_legs != NULL) {
        show_leg *l = w->witness_legs;
        w->witness_legs = l->next;
        gw_leg_cancel(&l->leg);
        free(l);
    }
}
