/* trust/firms.h: onboarding of third-party data-service firms. A firm applies (JSON with a
 * PKCS#10 CSR), a city admin approves or rejects, approval issues a short-lived client
 * certificate for spiffe://<city>.gba/firm/<id> signed by the city CA; the firm renews with a
 * new CSR; an admin suspends, reinstates or revokes; a CRL lists what is withdrawn. State lives
 * in its own LMDB environment. Not for: HTTP, authenticating the admin or the firm (gateway/),
 * or checking purposes against a city profile (the caller does, with conf/profile.h). */
#ifndef TRUST_FIRMS_H
#define TRUST_FIRMS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/bytes.h"
#include "base/err.h"

typedef struct trust_firms trust_firms;

/* Bounds of an application. Lengths are in bytes unless they say characters. */
#define TRUST_FIRM_APP_MAX 65536  /* a whole JSON application */
#define TRUST_FIRM_NAME_CHARS 200 /* name: 1..200 characters (code points) of UTF-8 */
#define TRUST_FIRM_NAME_MAX (TRUST_FIRM_NAME_CHARS * 4) /* ... so at most this many bytes */
#define TRUST_FIRM_REGNO_MAX 18       /* the longest registration number (mainland USCC) */
#define TRUST_FIRM_CONTACT_MAX 254    /* contact: 1..254 bytes of printable UTF-8 */
#define TRUST_FIRM_PURPOSES_MAX 8     /* purposes: 1..8 distinct terms */
#define TRUST_FIRM_PURPOSE_MAX 64     /* each term: 1..64 bytes of printable UTF-8 */
#define TRUST_FIRM_CSR_MAX 16384      /* csr: PEM text */
#define TRUST_FIRM_REASON_MAX 255     /* reject/suspend/revoke reasons, printable UTF-8 */
#define TRUST_FIRM_ID_LEN 32          /* firm ids: 32 lowercase hex digits (128 random bits) */
#define TRUST_FIRM_SERIAL_LEN 32      /* certificate serials: 32 lowercase hex digits */
#define TRUST_FIRM_DEFAULT_DAYS 90    /* certificate lifetime when |days| is 0 (1..365) */
#define TRUST_FIRM_CRL_DEFAULT_DAYS 7 /* CRL nextUpdate when |days| is 0 (1..365) */

/* A firm's application, as parsed and validated by trust_firm_app_parse(). */
typedef struct trust_firm_app {
    char name[TRUST_FIRM_NAME_MAX + 1];
    char registration_number[TRUST_FIRM_REGNO_MAX + 1];
    char jurisdiction[16]; /* "mainland", "hongkong" or "macau" */
    char contact[TRUST_FIRM_CONTACT_MAX + 1];
    char purposes[TRUST_FIRM_PURPOSES_MAX][TRUST_FIRM_PURPOSE_MAX + 1]; /* home-city terms */
    size_t npurposes;
    char *csr_pem; /* owned; NULL in stored records once a certificate was issued */
} trust_firm_app;

/* Parses and validates the application |json| (|len| bytes, not NUL-terminated):
 *   {"name": "...", "registration_number": "...", "contact": "...",
 *    "purposes": ["<home-city term>", ...], "csr": "<PEM>", "jurisdiction": "..."?}
 * Strict: one JSON object, duplicate or unknown members refused, every member a string (purposes
 * an array of strings), lengths as above, printable UTF-8 (no control, bidi-override or
 * line-separator characters, no leading or trailing spaces).
 * registration_number, by jurisdiction:
 *   mainland: unified social credit code, 18 characters of 0-9A-HJ-NP-RTUW-Y with the
 *             GB 32100-2015 check character (weighted mod 31) last;
 *   hongkong: business registration number, 8 digits, optionally "-" and a 3-digit branch
 *             number; format only (the BRN has no published check digit);
 *   macau:    commercial registration number, 1..8 digits; format only (no check digit).
 * "jurisdiction" is optional: without it, 18 characters mean mainland, 8 digits (with or
 * without branch) Hong Kong, 1..7 digits Macau; an 8-digit Macau number needs
 * "jurisdiction": "macau". When given, the number must have that jurisdiction's format.
 * csr: exactly one PEM "CERTIFICATE REQUEST" (nothing but whitespace around it), its signature
 * verifies, its key is EC P-256 or Ed25519, signed with SHA-256/384/512 (or Ed25519), and its
 * subject has exactly one O (organizationName) equal to "name" (so a CSR made for another firm
 * is refused). Subject CN and any requested extensions (SANs included) are ignored: the city
 * assigns the identity. Note: RFC 5280 bounds O at 64 characters, so OpenSSL-made CSRs exist
 * only for names of at most 64 characters.
 * Returns 0 and fills |out| (caller disposes with trust_firm_app_dispose()), BG_ERR_INVAL with
 * the exact problem in |eb| ("registration_number: check character is X, expected Y",
 * "csr: key is RSA-2048 (weak or unsupported); use EC P-256 or Ed25519", ...), or
 * BG_ERR_NOMEM. |out| is untouched on failure. Every message starts with the member's name or
 * "application: ". Thread-safe. */
int trust_firm_app_parse(const uint8_t *json, size_t len, trust_firm_app *out, bg_errbuf *eb);
/* Frees |a->csr_pem| and clears |a|. */
void trust_firm_app_dispose(trust_firm_app *a);

/* Validates a unified social credit code alone (as trust_firm_app_parse() does), with the
 * problem in |eb| prefixed "registration_number: ". Returns 0 or BG_ERR_INVAL. */
int trust_firm_uscc_check(const char *code, bg_errbuf *eb);

typedef enum trust_firm_status {
    TRUST_FIRM_PENDING = 1,
    TRUST_FIRM_APPROVED = 2,
    TRUST_FIRM_REJECTED = 3,
    TRUST_FIRM_SUSPENDED = 4,
    TRUST_FIRM_REVOKED = 5,
} trust_firm_status;

/* "pending", "approved", "rejected", "suspended", "revoked"; "unknown" otherwise. */
const char *trust_firm_status_name(trust_firm_status s);

/* One firm's record. Filled by the functions below; release with trust_firm_dispose(). */
typedef struct trust_firm {
    char id[TRUST_FIRM_ID_LEN + 1];
    trust_firm_app app; /* app.csr_pem: the pending CSR; NULL once approved */
    trust_firm_status status;
    char city[64];       /* the city it applied to */
    char spiffe_id[256]; /* spiffe://<city>.gba/firm/<id>, fixed at application */
    int64_t created;     /* unix seconds */
    int64_t updated;     /* unix seconds of the last change (status or certificate) */
    char cert_serial[TRUST_FIRM_SERIAL_LEN + 1]; /* current certificate; "" before approval */
    int64_t cert_not_after;                      /* its notAfter, unix seconds; 0 before approval */
    char *cert_pem; /* owned: current leaf then the CA certificate, PEM; NULL
                       before approval */
    char reason[TRUST_FIRM_REASON_MAX + 1]; /* the last reject/suspend/revoke reason, or "" */
} trust_firm;

/* Frees |r|'s owned strings and clears it. Safe on a zeroed record. */
void trust_firm_dispose(trust_firm *r);

/* Opens (creating |dir| with mode 0700 if needed) the firms' LMDB environment. Returns 0 and
 * |*out| (caller frees with trust_firms_close()) or BG_ERR_STORE / BG_ERR_NOMEM with
 * "dir: reason" in |eb|. Every call below is one LMDB transaction (state changes are atomic
 * and durable when they return 0) and the handle may be shared by threads. */
int trust_firms_open(trust_firms **out, const char *dir, bg_errbuf *eb);
void trust_firms_close(trust_firms *f); /* NULL is a no-op */

/* In all calls below: |out| may be NULL; when given and the call returns 0 it receives the
 * record after the change (dispose it); it is untouched on failure. |eb| may be NULL. Unknown
 * |id| (or one not of TRUST_FIRM_ID_LEN hex digits): BG_ERR_NOTFOUND. A transition not allowed
 * from the current status: BG_ERR_INVAL with e.g. "cannot approve a revoked application" or
 * "cannot renew a suspended firm". Storage failures: BG_ERR_STORE or BG_ERR_NOMEM.
 * |ca_crt|/|ca_key| are PEM file paths of the city CA (read at each call): BG_ERR_CERT when
 * they cannot be read, do not match, or the CA's SPIFFE trust domain is not the firm's city.
 * |reason| may be NULL ("" then), else printable UTF-8 of at most TRUST_FIRM_REASON_MAX bytes
 * (BG_ERR_INVAL otherwise). */

/* Records a new PENDING application for |app| (from trust_firm_app_parse(), borrowed; its CSR
 * is copied) to city |city| ([a-z][a-z0-9-]*), with a fresh random id. Returns 0,
 * BG_ERR_EXISTS when an application that was not rejected exists with the same jurisdiction
 * and registration number (answer 409), or BG_ERR_INVAL (bad city, app without CSR). */
int trust_firms_apply(trust_firms *f, const trust_firm_app *app, const char *city, trust_firm *out,
                      bg_errbuf *eb);

/* Reads firm |id| into |out| (caller disposes). Returns 0, BG_ERR_NOTFOUND, BG_ERR_STORE or
 * BG_ERR_NOMEM. */
int trust_firms_get(trust_firms *f, const char *id, trust_firm *out);

/* Calls |cb| with each firm (borrowed for the call), in id order, whose status is |status| (0:
 * every firm); stops early when |cb| returns non-zero and returns that value. The records are
 * a snapshot: |cb| may call other trust_firms_* functions. Returns 0, the callback's value,
 * BG_ERR_STORE or BG_ERR_NOMEM. */
int trust_firms_list(trust_firms *f, trust_firm_status status,
                     int (*cb)(void *arg, const trust_firm *firm), void *arg);

/* PENDING -> APPROVED: issues a certificate for the stored CSR's key: subject CN and O = the
 * name (first 64 characters), URI SAN spiffe://<city>.gba/firm/<id> only, EKU clientAuth,
 * keyUsage digitalSignature, CA:FALSE, random positive 128-bit serial, notBefore now - 5 min
 * (clock skew), notAfter now + |days| (0: TRUST_FIRM_DEFAULT_DAYS; 1..365 else BG_ERR_INVAL).
 * The CSR is dropped from the record. */
int trust_firms_approve(trust_firms *f, const char *id, const char *ca_crt, const char *ca_key,
                        int days, trust_firm *out, bg_errbuf *eb);
/* PENDING -> REJECTED. The registration number becomes free for a new application. */
int trust_firms_reject(trust_firms *f, const char *id, const char *reason, trust_firm *out,
                       bg_errbuf *eb);
/* APPROVED only: validates |csr_pem| (NUL-terminated, as for an application: one CSR, EC P-256
 * or Ed25519, O = the recorded name; problems as BG_ERR_INVAL "csr: ...") and issues a new
 * certificate as approve does, which becomes the current one. The previous certificates stay
 * valid until they expire (renewal is not revocation), but all of them are listed by
 * trust_firms_revoked() and trust_firms_crl() if the firm is later suspended or revoked. A firm
 * holds at most 16 unexpired certificates: one more is refused (BG_ERR_INVAL, "csr: ...")
 * until one expires. */
int trust_firms_renew(trust_firms *f, const char *id, const char *csr_pem, const char *ca_crt,
                      const char *ca_key, int days, trust_firm *out, bg_errbuf *eb);
/* APPROVED -> SUSPENDED (certificateHold on the CRL). */
int trust_firms_suspend(trust_firms *f, const char *id, const char *reason, trust_firm *out,
                        bg_errbuf *eb);
/* SUSPENDED -> APPROVED: the firm's certificates are usable again; clears the reason. */
int trust_firms_reinstate(trust_firms *f, const char *id, trust_firm *out, bg_errbuf *eb);
/* APPROVED or SUSPENDED -> REVOKED, final (cessationOfOperation on the CRL). The registration
 * number stays taken: a revoked firm cannot apply again under it. */
int trust_firms_revoke(trust_firms *f, const char *id, const char *reason, trust_firm *out,
                       bg_errbuf *eb);

/* One certificate of a suspended or revoked firm that has not expired yet. */
typedef struct trust_firm_revocation {
    const char *firm_id;
    const char *spiffe_id;
    const char *serial;       /* TRUST_FIRM_SERIAL_LEN lowercase hex digits */
    int64_t not_after;        /* unix seconds */
    int64_t revoked_at;       /* unix seconds: when the firm was suspended or revoked */
    trust_firm_status status; /* TRUST_FIRM_SUSPENDED or TRUST_FIRM_REVOKED */
} trust_firm_revocation;

/* Calls |cb| once per unexpired certificate (|now|: unix seconds; 0: the current time) of every
 * suspended or revoked firm, firm by firm in id order; the strings are borrowed for the call
 * (|cb| may call other trust_firms_* functions: the list is a snapshot). For the
 * gateway's in-memory deny list (refuse those SPIFFE ids and serials at handshake). Stops early
 * when |cb| returns non-zero and returns that value; else 0, BG_ERR_STORE or BG_ERR_NOMEM. */
int trust_firms_revoked(trust_firms *f, int64_t now,
                        int (*cb)(void *arg, const trust_firm_revocation *r), void *arg);

/* Appends to |pem_out| a PEM X.509 v2 CRL signed by the city CA listing every certificate
 * trust_firms_revoked() reports, each with its revocation time and reason (certificateHold for
 * suspended firms, cessationOfOperation for revoked ones); thisUpdate now, nextUpdate now +
 * |days| (0: TRUST_FIRM_CRL_DEFAULT_DAYS; 1..365), authorityKeyIdentifier and a CRL number one
 * greater than the last CRL this store produced. Returns 0, BG_ERR_INVAL (days), BG_ERR_CERT
 * (CA files, signing), BG_ERR_STORE or BG_ERR_NOMEM; |pem_out| is unchanged on failure. */
int trust_firms_crl(trust_firms *f, const char *ca_crt, const char *ca_key, int days,
                    bg_buf *pem_out, bg_errbuf *eb);

#endif /* TRUST_FIRMS_H */
