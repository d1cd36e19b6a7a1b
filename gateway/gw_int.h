/* gateway/gw_int.h: the gateway's internal types, shared by its .c files only. One process
 * (gw_server) runs N workers; each worker owns one event_base, its listeners, the inbound
 * connections it accepted and its own outbound sessions to every peer and the upstream, so
 * nothing on the request path is shared between threads except the read-only config, TLS
 * contexts, route table, and the atomic metrics. */
#ifndef GW_INT_H
#define GW_INT_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>
#include <jansson.h>

#include "base/bytes.h"
#include "base/err.h"
#include "base/clock.h"
#include "conf/conf.h"
#include "routing/learned.h"
#include "routing/table.h"
#include "trust/ledger.h"
#include "trust/tls.h"
#include "gateway/io.h"

typedef struct gw_server gw_server;
typedef struct gw_worker gw_worker;
typedef struct gw_conn gw_conn;
typedef struct gw_stream gw_stream;
typedef struct gw_client gw_client;
typedef struct gw_cstream gw_cstream;
typedef struct gw_metrics gw_metrics;
typedef struct gw_accesslog gw_accesslog;

/* Routes known to the metrics (labels); classification happens once per request. */
typedef enum gw_route_id {
    GW_ROUTE_HEALTHZ = 0,
    GW_ROUTE_READYZ,
    GW_ROUTE_METRICS,
    GW_ROUTE_QUERIES,
    GW_ROUTE_FED_QUERY,
    GW_ROUTE_CONTRACTS,     /* /v1/contracts[/<id>] */
    GW_ROUTE_FED_CONTRACTS, /* /fed/v1/contracts[/finalize] */
    GW_ROUTE_CATALOG,       /* /v1/catalog */
    GW_ROUTE_FED_CATALOG,   /* /fed/v1/catalog */
    GW_ROUTE_LEDGER,        /* /v1/ledger/..., /v1/receipts[/<index>] (regulators) */
    GW_ROUTE_FED_WITNESS,   /* /fed/v1/witness: a peer shows its checkpoint for cosigning */
    GW_ROUTE_FIRMS,         /* /v1/firms[/...]: onboarding (firms.c) */
    GW_ROUTE_CRL,           /* /v1/crl: the city's revoked certificates (firms.c) */
    GW_ROUTE_OTHER,
    GW_ROUTE_COUNT
} gw_route_id;

/* Work deferred to the end of the current event callback: nghttp2 sends for sessions that got
 * new frames while another session was being processed. Running them there, rather than through
 * event_active(), keeps one loop iteration per batch of I/O (libevent defers events activated
 * inside callbacks to the next iteration, costing an extra epoll_wait each time). */
/* Work finished on another thread (the data space's executor) and handed back to a worker's
 * loop: |deliver| runs on the loop thread, |discard| instead when the worker is being freed. */
typedef struct gw_job gw_job;
struct gw_job {
    gw_job *next;
    void (*deliver)(gw_job *j);
    void (*discard)(gw_job *j);
};

typedef struct gw_flushable gw_flushable;
struct gw_flushable {
    gw_flushable *next;
    bool queued;
    void (*run)(gw_flushable *f);
};

/* ---- process ---------------------------------------------------------------------------- */

/* A generation of the reloadable part of the configuration: peers, routes and upstream. Shared
 * by reference: the main thread and each worker hold one, and so does every outbound session
 * built from it (its conf_peer lives in |cfg|), so a retired generation is freed only when its
 * last session has finished its last stream. */
typedef struct gw_gen {
    conf_gateway *cfg;
    route_table *rt;
    bool owns_cfg; /* false for the first generation, whose cfg is the boot config */
    atomic_uint refs;
} gw_gen;

/* Takes |rt| and, when |owns_cfg|, |cfg|; one reference for the caller. NULL on ENOMEM. */
gw_gen *gw_gen_new(conf_gateway *cfg, route_table *rt, bool owns_cfg);
void gw_gen_ref(gw_gen *g);
void gw_gen_unref(gw_gen *g); /* NULL is a no-op */

struct gw_server {
    const conf_gateway *cfg; /* boot config, owned by main, outlives workers: city, listeners,
                                TLS, timeouts, limits. Peers and routes: the worker's gen. */
    trust_tls *tls;
    struct conf_profile **profiles; /* contract vocabularies of the cities we know (may be 0) */
    size_t nprofiles;
    struct trust_store *store; /* contracts (LMDB at ledger.path); NULL without profiles */
    struct space_db *space;     /* the embedded data space (upstream builtin), else NULL */
    struct space_pool *pool;    /* its executor threads */
    struct gw_answers *answers; /* queries.c: recent leg answers by query id (retries) */
    struct trust_ledger *ledger;  /* receipts (<ledger.path>/receipts); NULL: none kept */
    struct gw_receipts *receipts; /* receipts.c: the ledger's writer thread */
    struct gw_witness *witness;   /* witness.c: peers' checkpoints, cosignatures, split views */
    struct trust_firms *firms;    /* firms.c: onboarding records (<ledger.path>/firms) */
    gw_gen *gen;          /* newest generation (main's reference); guarded by gen_mu */
    pthread_mutex_t gen_mu;
    gw_accesslog *alog;
    gw_metrics *metrics;
    gw_worker *workers;
    size_t nworkers;
    atomic_bool draining;
    bool no_listeners; /* tests and fuzzing: workers bind nothing; conns come from socketpairs */
    /* Process-wide state created on first use (a zeroed gw_server needs no set-up for them)
     * and freed when the last worker is disposed: */
    _Atomic(struct gw_limits *) limits;   /* limits.c: per-firm and per-address buckets */
    _Atomic(struct gw_revoked *) revoked; /* authz.c: revoked identities */
};

/* ---- worker: one thread, one loop ------------------------------------------------------- */

struct gw_worker {
    gw_server *srv;
    unsigned idx;
    pthread_t thread;
    struct event_base *base;
    struct evconnlistener **listeners; /* parallel to cfg->listeners */
    struct gw_lctx *lctxs;             /* their callback contexts, same order */
    size_t nlisteners;
    gw_client **peers; /* parallel to cfg->peers */
    size_t npeers;
    gw_client *upstream; /* NULL when the upstream is the built-in responder */
    gw_gen *gen;         /* the generation |peers| and |upstream| were built from */
    gw_client *retiring; /* sessions of an older generation finishing their streams */
    struct event ctl_ev; /* activated from main: shutdown requested */
    struct event reload_ev; /* activated from main: a new generation is in srv->gen */
    struct event grace_ev;
    gw_conn *conns; /* intrusive list of inbound connections */
    size_t nconns;
    bool draining;
    /* libevent "common timeouts" for the per-request and idle timers: every stream arms one,
     * and with one duration per queue adding and removing them is O(1), not a heap update. */
    const struct timeval *ct_request;
    const struct timeval *ct_idle;
    /* Provider-side budget consumption waiting for this iteration's group commit (one LMDB
     * transaction for all of them; contracts.c). Slots of streams that went away are NULL. */
    gw_stream *consume[256];
    size_t nconsume;
    gw_flushable consume_fl;
    struct gw_scope_cache *scopes; /* contracts.c: decoded contract scopes by id */
    route_learned *learned;        /* catalog.c: routes peers advertise, refreshed by a timer */
    struct event learn_ev;
    bool learn_armed;
    struct learn_leg *learn_legs; /* catalog requests in flight */
    struct event witness_ev;      /* witness.c (worker 0): show our checkpoint to the peers */
    bool witness_armed;
    struct show_leg *witness_legs;
    pthread_mutex_t jobs_mu; /* guards |jobs| (LIFO), filled from executor threads */
    gw_job *jobs;
    struct event jobs_ev; /* activated from executor threads: |jobs| has work */
    gw_flushable *deferred; /* FIFO of pending flushes: head ... */
    gw_flushable *deferred_tail;
    uint64_t rng; /* request-id generator state (splitmix64) */
    uint64_t next_conn_id;
};

/* Creates the listeners and outbound sessions of worker |idx|; 0 or BG_ERR_*. */
int gw_worker_init(gw_worker *w, gw_server *srv, unsigned idx, bg_errbuf *eb);
void gw_worker_dispose(gw_worker *w);
/* Runs the loop until it drains; the thread function. */
void *gw_worker_run(void *arg);
/* Thread-safe: asks the worker to stop accepting and drain. */
void gw_worker_request_shutdown(gw_worker *w);
/* Thread-safe: asks the worker to adopt srv->gen (peers, routes, upstream) without dropping
 * connections: unchanged peers keep their sessions, removed or changed ones retire. */
void gw_worker_request_reload(gw_worker *w);
/* Called when an inbound connection is freed, to finish a drain. */
void gw_worker_conn_gone(gw_worker *w);
/* Queues |f| to run at the end of the current callback (no-op when queued). */
void gw_worker_defer(gw_worker *w, gw_flushable *f);
/* Removes |f| from the queue (its owner is being freed). */
void gw_worker_undefer(gw_worker *w, gw_flushable *f);
/* Runs the queue until empty; every top-level event callback ends with this. */
void gw_worker_run_deferred(gw_worker *w);
/* A receipt on its way into the ledger (receipts.c). The owner fills |w|, |receipt| and
 * |job| (deliver: runs on |w|'s loop once the append committed or failed; discard: the worker
 * is being freed) and keeps the request alive until then. */
typedef struct gw_receipt_req gw_receipt_req;
struct gw_receipt_req {
    gw_job job;
    gw_receipt_req *next;
    gw_worker *w;
    trust_receipt receipt;
    /* |budget.limit|: set by the owner when the receipt uses one query of its contract's
     * budget (trust_ledger_budget); |used| and |exhausted| come back with the result. */
    trust_ledger_budget budget;
    int result; /* 0, or why the append failed (nothing was appended) */
    uint64_t index;
    uint8_t leaf_hash[TRUST_LEDGER_HASH_LEN];
};
typedef struct gw_receipts gw_receipts;
/* Starts the writer thread of srv->ledger; 0 or BG_ERR_* with |eb|. */
int gw_receipts_start(gw_server *srv, bg_errbuf *eb);
/* Appends what is queued, posts the results, joins the thread (after the workers stopped). */
void gw_receipts_stop(gw_server *srv);
/* A contract-store write a loop waits for, run on the ledger's writer thread so that no event
 * loop waits for a disk sync: |run| runs there (it must touch nothing of the loop's: copy what
 * it needs into the job first), then |job| is posted to |w|. */
typedef struct gw_store_job gw_store_job;
struct gw_store_job {
    gw_job job;
    gw_store_job *next;
    gw_worker *w;
    void (*run)(gw_store_job *j);
};
/* Any loop thread: queues |j| (without a writer thread, runs it at once; delivered alike). */
void gw_receipts_store_job(gw_server *srv, gw_store_job *j);
/* Any loop thread: queues |r| for the next group commit. Without a ledger the result is an
 * immediate BG_ERR_STORE (delivered the same way). */
void gw_receipts_submit(gw_server *srv, gw_receipt_req *r);
/* The writer's counters since start (all 0 without a ledger). */
typedef struct gw_receipts_stat {
    uint64_t appended, failed; /* receipts */
    uint64_t batches;          /* group commits (one checkpoint each) */
    uint64_t commit_us;        /* wall time of those commits: append, sign, sync */
    uint64_t budget_refused;   /* releases refused by the count in the commit (over budget) */
} gw_receipts_stat;
void gw_receipts_stats(gw_server *srv, gw_receipts_stat *out);
/* Loop thread: records |receipt| (copied) with nobody waiting for it: refusals and contract
 * events, which release no data. A failed append is logged. No-op without a ledger. */
void gw_receipts_event(gw_worker *w, const trust_receipt *receipt);

/* Any thread: hands |j| to |w|'s loop, which runs j->deliver (in posting order). */
void gw_worker_post(gw_worker *w, gw_job *j);
/* Posts the jobs |first| -> ... -> |last| (linked by |next|, newest first: on_jobs runs them
 * in the reverse of this order) with one lock and one wake-up. */
void gw_worker_post_chain(gw_worker *w, gw_job *first, gw_job *last);
/* Fills |out| (33 bytes) with a fresh 32-hex-digit request id. */
void gw_worker_new_request_id(gw_worker *w, char *out);

/* ---- inbound connections and their streams (server.c) ----------------------------------- */

struct gw_conn {
    gw_worker *w;
    const conf_listener *lst;
    gw_io io;
    gw_flushable fl; /* deferred nghttp2 send */
    nghttp2_session *h2;
    trust_identity id;
    char addr[64];
    uint64_t conn_id;
    gw_conn *prev, *next; /* worker's list */
    gw_stream *streams;   /* open streams */
    struct event idle_ev;
    bool ready;   /* TLS done (or h2c) and session created */
    bool closing; /* freed from the next flush */
};

/* Server-side request state: created at the first HEADERS, freed in on_stream_close (or
 * when the connection is freed). */
struct gw_stream {
    gw_conn *conn;
    int32_t id;
    gw_stream *prev, *next;
    /* request */
    int64_t content_length; /* -1 if absent */
    bool bad_header;
    bool too_large;
    bool req_done;
    bg_buf body;
    gw_route_id route;
    /* response */
    int status;
    bool responded; /* response HEADERS submitted */
    struct evbuffer *resp_body;
    bool resp_eof;
    bool resp_deferred;
    gw_cstream *up;        /* outbound leg while proxying */
    struct event timer_ev; /* request timeout */
    bool timer_added;
    uint64_t start_us;
    uint64_t bytes_in, bytes_out;
    void *ctx;                 /* a handler's state across outbound calls (contracts) */
    bool in_consume;           /* waiting in w->consume, or in |consume_job|, for its commit */
    void *consume_job;         /* contracts.c: the store commit it waits for, once sent */
    uint64_t eps_micro;        /* provider: privacy budget this query spends (0: none) */
    /* provider with a ledger: the contract's query limit in the ledger's count
     * (trust_ledger_budget.limit; 0: this release uses no query, e.g. a cached noisy answer) */
    uint32_t budget_limit;
    bool receipted; /* its refusal is in the ledger already (not again as the stream closes) */
    uint8_t digest[32];        /* provider: SHA-256 of the query leg's canonical query */
    uint64_t deadline_ms;      /* x-baygate-deadline-ms as received (0: none) */
    uint64_t deadline_at_us;   /* bg_now_us() by which the answer is due (0: none) */
    void (*ctx_free)(void *);  /* frees |ctx| when the stream goes */
    struct gw_limit_slot *limit_slot; /* limits.c: the firm's in-flight count this holds */
    uint32_t retry_after_s;    /* > 0: the response carries retry-after (seconds) */
    /* Text fields last: a new stream zeroes only what is above and the first byte of each of
     * these (GW_STREAM_ZERO_END), not kilobytes of arrays on every request. */
    char method[16];
    char path[512];
    char request_id[65];
    char hops[1024];
    char peer_name[256]; /* the caller: SPIFFE id, or "-" */
    char dest[64];       /* destination city, when routed */
    char req_type[64];   /* the request's content-type, passed on when forwarding */
    char contract[72];   /* contract id the query runs under (x-baygate-contract between
                            gateways; "contract" in a client's JSON) */
    char requester[256]; /* the firm a federated query is for (x-baygate-requester) */
    char fwd_hops[1100]; /* hop list to forward with, kept while usage control waits */
    char operation[40];  /* a client query's operation ("count" when absent) */
    char dataset[200];   /* a client query's dataset, as stage_parse() read it */
    char resp_route[1100]; /* x-baygate-route to send back */
    char err_code[48];     /* error code answered, for the log ("" when none) */
};
#define GW_STREAM_ZERO_END offsetof(gw_stream, method)

/* Moves |h2|'s pending frames into |io| and writes them: produces up to GW_IO_HIGH, writes,
 * and repeats while the socket takes everything (output left pending resumes from the io's
 * writable() callback). Returns 0, or BG_ERR_PROTOCOL / BG_ERR_NOMEM / BG_ERR_IO with |*why|
 * set to a static or io-owned description. Never call it from inside an nghttp2 callback. */
int gw_h2_send(nghttp2_session *h2, gw_io *io, const char **why);
/* The read side of gw_h2_send(): reads from |io| into |h2| until the socket has nothing more
 * or GW_IO_READ_BUDGET reads were made (then it yields, see gw_io_yield_read()). Returns 0
 * (|*got| says whether any byte arrived), GW_H2_EOF, BG_ERR_IO (|*why| = io->err) or
 * BG_ERR_PROTOCOL (|*why| from nghttp2: the session rejected the input). */
int gw_h2_recv(nghttp2_session *h2, gw_io *io, bool *got, const char **why);
#define GW_H2_EOF 1 /* the peer closed the connection */
/* Schedules a deferred nghttp2 send on |conn| (safe inside any callback). */
void gw_conn_schedule_flush(gw_conn *conn);
/* Submits a response with status and an optional JSON |body| (copied). Adds x-request-id,
 * x-baygate-route when |s|->resp_route is set and retry-after when |s|->retry_after_s is.
 * Returns 0 or BG_ERR_*. */
int gw_stream_respond(gw_stream *s, int status, const char *content_type, const void *body,
                      size_t len);
/* Answers with the JSON document |j| (taken, even on error; NULL answers 500) and a newline. */
void gw_stream_respond_json(gw_stream *s, int status, json_t *j);
/* Answers {"error":{"code":..,"message":..}} with |status|. */
void gw_stream_error(gw_stream *s, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Starts a streamed response whose body the caller appends to s->resp_body and ends with
 * gw_stream_body_done(); |nv| extra headers (copied by nghttp2). */
int gw_stream_respond_streaming(gw_stream *s, int status, const nghttp2_nv *extra, size_t nextra);
/* New body bytes are in s->resp_body, or the body is complete (|eof|). */
void gw_stream_body_more(gw_stream *s, bool eof);
/* Resets |s| (e.g. the next hop failed mid-body). */
void gw_stream_reset(gw_stream *s, uint32_t error_code);
/* Accept callback for listeners (worker.c registers it). */
void gw_conn_accept(gw_worker *w, const conf_listener *lst, evutil_socket_t fd,
                    const struct sockaddr *sa, int salen);
/* GOAWAY to every connection of |w|, as part of a drain. */
void gw_conn_goaway_all(gw_worker *w);
/* Loop thread of |w|: ends at once (GOAWAY, then close) every connection of |w| authenticated
 * as |spiffe_id|, in-flight streams included. Returns how many. */
size_t gw_conn_close_identity(gw_worker *w, const char *spiffe_id);
void gw_conn_free(gw_conn *conn);

/* ---- outbound sessions (client.c) -------------------------------------------------------- */

typedef enum gw_client_state {
    GW_CLIENT_IDLE = 0,
    GW_CLIENT_CONNECTING,
    GW_CLIENT_CONNECTED,
    GW_CLIENT_BACKOFF,
} gw_client_state;

const char *gw_client_state_name(gw_client_state st);

/* Creates an outbound session manager for |peer| (or the upstream when |peer| is NULL, using
 * |upstream_url|), both borrowed from |gen| (which it references), and starts connecting. */
int gw_client_new(gw_client **out, gw_worker *w, gw_gen *gen, const conf_peer *peer,
                  const conf_url *upstream_url);
void gw_client_free(gw_client *cl);
/* True when |cl| talks to exactly |peer|'s URLs and identity (|peer| NULL: |url|). */
bool gw_client_same_target(const gw_client *cl, const conf_peer *peer, const conf_url *url);
/* Moves |cl| onto |gen|'s copy of its target (same_target() was true). */
void gw_client_rebind(gw_client *cl, gw_gen *gen, const conf_peer *peer, const conf_url *url);
/* Takes |cl| out of service: no new streams; it frees itself (and leaves w->retiring) once
 * its in-flight streams end, or at once when it has none. */
void gw_client_retire(gw_client *cl);
/* Frees every retired session of |w| now (worker shutdown). */
void gw_client_free_retiring(gw_worker *w);
gw_client_state gw_client_get_state(const gw_client *cl);
const char *gw_client_name(const gw_client *cl);

/* Sends |s|'s request to |cl| as POST |path| with its body (moved out of |s|), the request
 * id and the hop list |hops|; the response is relayed back into |s|. On immediate failure it
 * answers |s| itself (502 peer_unavailable). */
void gw_client_forward(gw_client *cl, gw_stream *s, const char *path, const char *hops);
/* The answer to a gw_client_call(): |status| 0 means the call failed before a complete answer
 * (|code| and |msg| say why: peer_unavailable, bad_gateway, ...); otherwise |ctype| (or NULL)
 * and the |len| body bytes at |body| (valid during the call only). Runs only while |s| lives. */
typedef void (*gw_call_cb)(gw_stream *s, int status, const char *ctype_or_code,
                           const char *msg, const uint8_t *body, size_t len);
#define GW_CALL_MAX_RESPONSE (256 * 1024)
/* Like gw_client_forward(), but the gateway itself is the client: sends POST |path| with a copy
 * of |len| bytes at |body| (content-type |ctype|) on behalf of |s| (its request id and, via
 * s->dest, x-baygate-dest), buffers the answer (at most GW_CALL_MAX_RESPONSE) and hands it to
 * |cb| instead of relaying it. If |s| goes away first, the call is cancelled and |cb| never
 * runs. |cb| may run before this returns (e.g. the peer is in backoff). */
void gw_client_call(gw_client *cl, gw_stream *s, const char *path, const char *hops,
                    const uint8_t *body, size_t len, const char *ctype, gw_call_cb cb);
/* One leg of a fan-out: an outbound call owned by its caller (not by a gw_stream), so that
 * one request can have many in flight. The caller fills the request fields and |done|, which
 * runs once with the buffered answer (|status| 0: failed before a complete answer, |code| and
 * |msg| say why), unless gw_leg_cancel() came first. */
typedef struct gw_leg gw_leg;
struct gw_leg {
    void (*done)(gw_leg *leg, int status, const char *ctype_or_code, const char *msg,
                 const uint8_t *body, size_t len);
    gw_cstream *cs; /* client.c's; NULL when not in flight */
    char path[64];
    char request_id[65];
    char hops[1100];
    char dest[64];
    char ctype[64];
    char contract[72];
    char requester[256];
    uint64_t deadline_ms; /* sent as x-baygate-deadline-ms when > 0 */
    char route[1100];     /* the answer's x-baygate-route, set before |done| runs */
};
#define GW_LEG_MAX_RESPONSE (48u * 1024 * 1024)
/* Sends |leg| (POST leg->path with a copy of |len| bytes at |body|) to |cl|. leg->done may run
 * before this returns (peer in backoff). */
void gw_client_leg(gw_client *cl, gw_leg *leg, const uint8_t *body, size_t len);
/* Cancels an in-flight leg: done never runs. No-op when not in flight. */
void gw_leg_cancel(gw_leg *leg);
/* |s| is going away: cancels its outbound leg. */
void gw_cstream_detach(gw_cstream *cs);
/* The server side consumed |n| relayed bytes: reopens the outbound stream's window. */
void gw_cstream_consumed(gw_cstream *cs, size_t n);

/* ---- request pipeline (handlers.c) ------------------------------------------------------- */

/* The next-hop peer toward |city| among the configured alternatives: a connected session
 * first, then one connecting, then one backing off, in the configured order; never |avoid|
 * (may be NULL). NULL: no route (or the own city). */
const conf_peer *gw_route_pick(gw_worker *w, const char *city, const conf_peer *avoid);
/* Classifies |s| at end of headers (sets s->route). */
void gw_request_classify(gw_stream *s);
/* The request is complete (END_STREAM): authenticate, route, enforce, forward. */
void gw_request_dispatch(gw_stream *s);
/* The stream closed: record (access log, metrics). */
void gw_request_record(gw_stream *s, uint32_t error_code);
/* Onboarding (firms.c, built when present; handlers.c answers 501 otherwise): /v1/firms[/...]
 * and GET /v1/crl, after authorization (authz.c) and rate limits (limits.c). */
void gw_firms_client(gw_stream *s);
/* Opens srv->firms and loads the deny list of suspended/revoked firms; 0 or BG_ERR_*. */
int gw_firms_open(gw_server *srv, bg_errbuf *eb);
void gw_firms_crl(gw_stream *s);
/* Contracts (contracts.c): /v1/contracts for clients (authenticated), /fed/v1/contracts for
 * this city as provider (after peer authentication and routing). */
void gw_contracts_client(gw_stream *s);
void gw_contracts_fed(gw_stream *s);
/* Usage control for a query that |local| (this city holds the data) or not: at the home
 * gateway the contract must exist, belong to the caller, be in force and cover the dataset;
 * at the provider, the same and the budget is consumed atomically. Returns true to go on;
 * otherwise it answered. A gateway without profiles enforces nothing. */
typedef enum gw_enforce {
    GW_ENFORCE_GO = 0, /* go on now */
    GW_ENFORCE_STOP,   /* refused: it answered */
    GW_ENFORCE_WAIT,   /* pending a group commit: gw_request_resume() follows, or an answer */
} gw_enforce;
gw_enforce gw_contracts_enforce(gw_stream *s, bool local);
/* A refusal to be answered later (or shown per city in a fan-out). */
typedef struct gw_refusal {
    int status;
    const char *code; /* static */
    char msg[300];
} gw_refusal;
/* Home-gateway usage control for one leg of a query, without answering: contract |id| exists,
 * is |requester|'s, in force, and covers |dataset| ("<city>/<name>") and canonical operation
 * |op|. True to go on; false with |why|. True when this gateway keeps no contracts. */
bool gw_contracts_check_home(gw_worker *w, const char *id, const char *requester,
                             const char *dataset, const char *op, gw_refusal *why);
/* The effective minimum cell size, epsilon (0: none) and canonical purpose (into |purpose|,
 * |cap| bytes) of contract |id|, from the worker's cache (filled by usage control on this
 * worker). False when not cached. */
bool gw_contracts_limits(gw_worker *w, const char *id, uint32_t *k, double *epsilon,
                         char *purpose, size_t cap);
/* Frees the worker's contract caches (worker shutdown). */
void gw_contracts_worker_dispose(gw_worker *w);
/* The stream left w->consume before its commit (it is being freed). */
void gw_contracts_cancel(gw_stream *s);
/* Usage control passed after a wait: forward the query (handlers.c). */
void gw_request_resume(gw_stream *s);
/* The loaded profile of |city| or NULL. */
const struct conf_profile *gw_profile_of(const gw_server *srv, const char *city);
/* Federated queries (queries.c). Home: /v1/queries from an authenticated client, answered
 * after every leg. Provider: gw_queries_fed_parse() decodes a /fed/v1/query leg addressed to
 * this city (sets s->dataset and s->operation for usage control; false: it answered), and
 * gw_queries_fed() runs it once usage control let it through. */
/* Returns false, answering nothing, when the dataset is outside the federation's schemas (the
 * caller relays it opaquely, see upstream.passthrough). */
bool gw_queries_client(gw_stream *s);
bool gw_queries_fed_parse(gw_stream *s);
/* Catalogs: /v1/catalog (the federation's, for an authenticated client) and /fed/v1/catalog
 * (this city's datasets and gateway certificate, for a peer). */
void gw_catalog_client(gw_stream *s);
/* The regulators' ledger API (ledger_api.c), after client authentication. */
void gw_ledger_api(gw_stream *s);
/* A receipt as JSON, and a receipt reference {"city","index","leaf_hash"}; new references. */
json_t *gw_receipt_json(const trust_receipt *r);
json_t *gw_receipt_ref_json(const char *city, uint64_t index, const uint8_t leaf[32]);
void gw_catalog_fed(gw_stream *s);
/* Starts learning routes from the peers' catalogs on |w| (first round soon, then every
 * GW_LEARN_INTERVAL_MS); gw_catalog_worker_dispose() stops it. 0 or BG_ERR_NOMEM. */
int gw_catalog_worker_init(gw_worker *w);
void gw_catalog_worker_dispose(gw_worker *w);
#define GW_LEARN_INTERVAL_MS 5000
/* Witnessing (witness.c). */
typedef struct gw_witness gw_witness;
#define GW_WITNESS_INTERVAL_MS 2000
int gw_witness_new(gw_server *srv, bg_errbuf *eb); /* after the ledger opened */
void gw_witness_free(gw_server *srv);
/* Re-reads which cities are blocked (an operator removed evidence files; SIGHUP). */
void gw_witness_reload(gw_server *srv);
/* True when |city| showed a split view: no traffic with it. Any thread. */
bool gw_witness_blocked(gw_server *srv, const char *city);
uint64_t gw_witness_split_views(gw_server *srv);
/* Appends the cosignature lines held for our checkpoint of |size|. 0 or BG_ERR_NOMEM. */
int gw_witness_cosignatures(gw_server *srv, uint64_t size, bg_buf *out);
/* /fed/v1/witness addressed to this city (after peer authentication). */
void gw_witness_fed(gw_stream *s);
void gw_witness_worker_init(gw_worker *w);
void gw_witness_worker_dispose(gw_worker *w);
/* Federation dataset names close to |name| ("a, b"), for a 404. */
void gw_queries_near_names(const char *name, char *out, size_t cap);
void gw_queries_fed(gw_stream *s);
/* The group commit found an identical noisy query answered before: publish that answer. */
void gw_queries_fed_cached(gw_stream *s);
/* True when leg |s| was answered before (a retry): usage control checks it without spending. */
bool gw_queries_is_replay(const gw_stream *s);
/* The process's recent-answers table (for retried legs): gw_answers_new() before the workers
 * start, gw_answers_free() after they stopped. */
typedef struct gw_answers gw_answers;
int gw_answers_new(gw_server *srv);
void gw_answers_free(gw_server *srv);
/* Noisy releases per contract: each spends this fraction of its epsilon. */
#define GW_DP_RELEASES 10

/* ---- authorization (authz.c) ------------------------------------------------------------- */

/* The outcome of looking a request up in the authorization table. */
typedef enum gw_authz_result {
    GW_AUTHZ_ALLOW = 0,
    GW_AUTHZ_DENY,      /* a known endpoint and method, not for this caller: 403 */
    GW_AUTHZ_NO_METHOD, /* a known endpoint, another method: 405 */
    GW_AUTHZ_NO_PATH,   /* no such endpoint under the route (e.g. /v1/firms/a/b/c): 404 */
} gw_authz_result;
/* Looks |method| on |route| up in the one table of who may call what (deny by default).
 * |subpath| is what follows the route's prefix ("" for exact routes, "/<id>/approve" under
 * /v1/firms; a '?' ends it). |id| is the caller (a local listener's client_identity counts as
 * its role; NULL or not present: anonymous), |local_listener| whether it came on a `local`
 * listener, |self_city| this gateway's city. On a refusal, |*why| (may be NULL) says who may
 * call it (static text). Pure: any thread. The /fed/v1/ routes admit gateways of other cities;
 * which of them are configured peers is checked after (handlers.c). */
gw_authz_result gw_authz_check(gw_route_id route, const char *method, const char *subpath,
                               const trust_identity *id, bool local_listener,
                               const char *self_city, const char **why);
/* gw_authz_check() == GW_AUTHZ_ALLOW. */
bool gw_authz_allowed(gw_route_id route, const char *method, const char *subpath,
                      const trust_identity *id, bool local_listener, const char *self_city,
                      const char **why);

/* The revoked identities, process-wide (the firms module keeps them in step with its store).
 * Any thread. gw_revoke_identity() adds |spiffe_id| (|serial_hex|: the certificate that
 * prompted it, for the logs; may be NULL): from then on its requests are refused (403
 * certificate_revoked), TLS handshakes presenting it fail, and every worker closes its open
 * connections (a job posted to each). Returns 0 (also when already revoked), BG_ERR_INVAL
 * (not a SPIFFE id) or BG_ERR_NOMEM. */
int gw_revoke_identity(gw_server *srv, const char *spiffe_id, const char *serial_hex);
/* Takes |spiffe_id| out of the set (reinstated); no-op when absent. */
void gw_unrevoke_identity(gw_server *srv, const char *spiffe_id);
bool gw_identity_revoked(gw_server *srv, const char *spiffe_id);
/* The trust_tls revocation hook: |arg| is the gw_server. Logs a refusal. */
bool gw_tls_revoked(void *arg, const char *spiffe_id, const char *serial_hex);
/* Frees the set (after the workers stopped; the last worker's dispose calls it). */
void gw_authz_dispose(gw_server *srv);

/* ---- rate limits (limits.c) -------------------------------------------------------------- */

typedef enum gw_limit_kind {
    GW_LIMIT_OK = 0,
    GW_LIMIT_FIRM_RATE,    /* the firm's token bucket is empty */
    GW_LIMIT_FIRM_STREAMS, /* the firm has limits.firm_max_streams requests in flight */
    GW_LIMIT_APPLY,        /* applications from this source address over apply_per_minute */
    GW_LIMIT_COUNT
} gw_limit_kind;
typedef struct gw_limit_slot gw_limit_slot;
/* Admits one request of firm |spiffe_id| at |now_us| (bg_now_us()) under srv->cfg->limits:
 * takes a token and an in-flight place. GW_LIMIT_OK with |*slot| set (NULL when nothing is
 * counted) which the caller hands back with gw_limits_firm_release() when the stream ends;
 * otherwise the limit hit and |*retry_after_s| (>= 1). Process-wide, any thread. */
gw_limit_kind gw_limits_firm_admit(gw_server *srv, const char *spiffe_id, uint64_t now_us,
                                   gw_limit_slot **slot, uint32_t *retry_after_s);
void gw_limits_firm_release(gw_server *srv, gw_limit_slot *slot); /* NULL is a no-op */
/* Admits one application (POST /v1/firms) from source address |addr| ("host:port" or "host";
 * the port is ignored). GW_LIMIT_OK or GW_LIMIT_APPLY with |*retry_after_s|. */
gw_limit_kind gw_limits_apply_admit(gw_server *srv, const char *addr, uint64_t now_us,
                                    uint32_t *retry_after_s);
/* In-flight requests counted for |spiffe_id| now (tests, metrics). */
uint32_t gw_limits_firm_inflight(gw_server *srv, const char *spiffe_id);
/* Frees the tables (after the workers stopped; the last worker's dispose calls it). */
void gw_limits_dispose(gw_server *srv);

/* ---- metrics (metrics.c) and access log (accesslog.c) ------------------------------------ */

int gw_metrics_new(gw_metrics **out);
void gw_metrics_free(gw_metrics *m);
void gw_metrics_request(gw_metrics *m, gw_route_id route, int status, uint64_t latency_us,
                        uint64_t bytes_in, uint64_t bytes_out);
void gw_metrics_conn(gw_metrics *m, bool inbound, int delta);
void gw_metrics_streams(gw_metrics *m, int delta);
/* Outbound session |peer| moved from state |from| to |to| (-1: created / removed). */
void gw_metrics_peer_state(gw_metrics *m, const char *peer, int from, int to);
/* A request was refused with 429 rate_limited by limit |k|. */
void gw_metrics_rate_limited(gw_metrics *m, gw_limit_kind k);
/* Sessions to |peer| in |state| across all workers now. */
long long gw_metrics_peer_count(gw_metrics *m, const char *peer, int state);
/* Renders Prometheus text for the whole process into |out|. */
int gw_metrics_render(gw_metrics *m, bg_buf *out);
const char *gw_route_label(gw_route_id r);

/* Opens the log named by |where| ("stdout", "off", or a path); 0 or BG_ERR_IO with |eb|. */
int gw_accesslog_new(gw_accesslog **out, const char *where, bg_errbuf *eb);
void gw_accesslog_free(gw_accesslog *al);
/* Reopens a file log at its path (after rotation moved it); any thread. 0 or BG_ERR_IO. */
int gw_accesslog_reopen(gw_accesslog *al, bg_errbuf *eb);
bool gw_accesslog_enabled(const gw_accesslog *al);
void gw_accesslog_write(gw_accesslog *al, const gw_stream *s, const char *city,
                        uint64_t latency_us, uint32_t error_code);

#endif /* GW_INT_H */
