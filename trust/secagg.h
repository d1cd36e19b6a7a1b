/* trust/secagg.h: secure aggregation by pairwise additive masks mod 2^64, so that the home
 * gateway can sum several provider cities' vectors (fine-grid quantile histograms) without
 * seeing any single city's. Each pair of gateways shares a mask stream from an ECDH secret
 * of their certified keys; one adds it, the other subtracts it, so the masks cancel in the
 * sum. Not for: dropout recovery (every listed party must contribute, or the sum is noise),
 * transport, or deciding which cities take part (the home gateway's plan). */
#ifndef TRUST_SECAGG_H
#define TRUST_SECAGG_H
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct evp_pkey_st;
struct x509_store_st;

/* One participant of an aggregation. */
typedef struct trust_secagg_party {
    const char *city;        /* "shenzhen": the gateway of spiffe://<city>.gba/gateway */
    const uint8_t *cert_der; /* its gateway (leaf) certificate, DER; may be NULL for self */
    size_t cert_len;
} trust_secagg_party;

/* Masks |vals| (|nvals| counts) in place for the aggregation |query_id| among |parties|,
 * as party |self_city| holding |own_key|. The masked vectors of all parties sum (mod 2^64)
 * to the plain sum; any one masked vector alone is uniformly random to whoever lacks the
 * other parties' keys.
 *
 * For every other party j: its certificate must parse (exactly |cert_len| bytes), verify
 * against |store| (X509_verify_cert with the TLS client purpose: gateways present these
 * certificates when dialling peers; expiry, chain and the city CAs' name constraints
 * apply), and carry as its first spiffe:// URI SAN exactly spiffe://<city_j>.gba/gateway.
 * Then: ECDH (EC P-256 only, both keys; the peer point is validated) between |own_key| and
 * its public key; HKDF-SHA256 (salt = the bytes of |query_id|, info = "baygate secagg v1|"
 * + the two city names in strcmp order joined by "|") expanded to 48 bytes: an AES-256-CTR
 * key and IV, whose keystream read as little-endian uint64 values gives mask[0..nvals).
 * The mask is added when strcmp(self_city, city_j) < 0 and subtracted otherwise, mod 2^64.
 * Both ends derive the same stream (the shared secret and info are symmetric), so the
 * pair's masks cancel. A fresh |query_id| per aggregation gives fresh masks; reusing one
 * for two different vectors reveals their difference to the aggregator.
 *
 * |parties| lists every participant once, self included (its certificate, when given, must
 * hold |own_key|'s public key); at least two. City names are [a-z][a-z0-9-]*, at most 63
 * bytes. |store| is borrowed (e.g. trust_tls_trust_store()); |own_key| too (e.g.
 * trust_tls_private_key()). Secrets (shared secrets, derived keys, the accumulated mask)
 * are wiped with OPENSSL_cleanse before returning.
 *
 * Returns 0; BG_ERR_INVAL (bad arguments: NULLs, nvals overflow, empty query_id, a city
 * name of the wrong shape, fewer than two parties, a duplicate city, |self_city| missing,
 * |own_key| not an EC P-256 private key or not matching self's certificate); BG_ERR_CERT
 * (a party's certificate does not parse, verify, carry the right SAN, or hold an EC P-256
 * key); BG_ERR_TLS (an OpenSSL failure, with its reason); BG_ERR_NOMEM. |eb| (may be NULL)
 * names the party and the reason. On any error |vals| is untouched. Thread-safe: every call
 * builds its own OpenSSL contexts; |store| must not be modified meanwhile. */
int trust_secagg_mask(struct evp_pkey_st *own_key, const char *self_city,
                      const trust_secagg_party *parties, size_t nparties,
                      struct x509_store_st *store, const char *query_id, uint64_t *vals,
                      size_t nvals, bg_errbuf *eb);

#endif /* TRUST_SECAGG_H */
