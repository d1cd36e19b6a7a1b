/* trust/certs.h: a small certificate authority for cities, built on OpenSSL's library (no
 * shelling out): city CA, gateway and client certificates carrying SPIFFE URI SANs. Used by
 * `baygatectl certs`, the demo and the tests. Keys are EC P-256, PEM files, keys mode 0600. */
#ifndef TRUST_CERTS_H
#define TRUST_CERTS_H
#include <stdbool.h>
#include "base/err.h"

typedef struct trust_cert_req {
    const char *spiffe_id;  /* e.g. "spiffe://guangzhou.gba/firm/acme"; required */
    const char *common_name;/* subject CN; NULL -> derived from the SPIFFE id */
    bool server;            /* add serverAuth EKU and SANs DNS:localhost, IP:127.0.0.1, IP:::1 */
    int days;               /* validity from now; default 365 when 0 */
    long not_before_offset_s; /* added to "now" for notBefore (negative makes it past); tests
                                 use it with a small |days| to make an expired certificate */
} trust_cert_req;

/* Creates a self-signed CA for |city| (CN "<city> city CA", basicConstraints CA:TRUE, URI SAN
 * spiffe://<city>.gba) into |crt_path| and |key_path|. Returns 0 or BG_ERR_* with |eb|. */
int trust_certs_ca_new(const char *city, int days, const char *crt_path, const char *key_path,
                       bg_errbuf *eb);

/* Issues a leaf certificate for |req| signed by the CA in |ca_crt|/|ca_key|, writing the leaf
 * (followed by nothing else) to |crt_path| and its new key to |key_path|. */
int trust_certs_issue(const char *ca_crt, const char *ca_key, const trust_cert_req *req,
                      const char *crt_path, const char *key_path, bg_errbuf *eb);

#endif /* TRUST_CERTS_H */
