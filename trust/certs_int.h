/* trust/certs_int.h: certificate helpers shared inside trust/ (certs.c owns them; firms.c
 * issues firms' certificates with them). OpenSSL types stay inside trust/. */
#ifndef TRUST_CERTS_INT_H
#define TRUST_CERTS_INT_H
#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/err.h"

/* Loads the issuing CA from PEM files, checking that it is a CA and that the key belongs to
 * it. Returns 0 with |*crt_out| and |*key_out| (caller frees), or BG_ERR_CERT with the file
 * and reason in |eb|. */
int trust_certs_load_ca(X509 **crt_out, EVP_PKEY **key_out, const char *crt_path,
                        const char *key_path, bg_errbuf *eb);
/* Adds an extension written in OpenSSL's config syntax (fixed, validated values only).
 * Returns 0 or -1. */
int trust_certs_add_ext(X509 *cert, X509 *issuer, int nid, const char *value);
/* The CA's SPIFFE trust domain ("spiffe://<city>.gba", its first spiffe:// URI SAN) into |td|
 * (|cap| bytes); "" when it carries none. */
void trust_certs_ca_domain(X509 *ca, char *td, size_t cap);

#endif /* TRUST_CERTS_INT_H */
