/* tests/fuzz/fuzz_contract.c: arbitrary bytes into trust_contract_decode() and, when they
 * decode, trust_contract_verify() against a fixed trust setup (guangzhou and hongkong city CAs
 * and gateways, generated once at startup into a mkdtemp() directory with trust/certs.h).
 * Neither may crash, leak or read out of bounds; a decoded contract must re-encode to exactly
 * the input bytes (the decoder accepts canonical encodings only). */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "trust/certs.h"
#include "trust/contract.h"
#include "trust/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static trust_tls *tls;
static int64_t now;

/* Builds the trust setup once; aborts when it cannot (the run would be meaningless). */
static void setup(void)
{
    char dir[] = "/tmp/bg-fuzz-contract-XXXXXX";
    char f[6][64];
    static const char *const names[6] = {"gz-ca.crt", "gz-ca.key", "hk-ca.crt",
                                         "hk-ca.key", "gw.crt",    "gw.key"};
    char bundle[64];
    bg_errbuf eb = {{0}};
    if (mkdtemp(dir) == NULL) {
        abort();
    }
    for (int i = 0; i < 6; i++) {
        snprintf(f[i], sizeof(f[i]), "%s/%s", dir, names[i]);
    }
    snprintf(bundle, sizeof(bundle), "%s/bundle.crt", dir);
    trust_cert_req req = {
        .spiffe_id = "spiffe://guangzhou.gba/gateway", .server = true, .days = 30};
    if (trust_certs_ca_new("guangzhou", 30, f[0], f[1], &eb) != 0 ||
        trust_certs_ca_new("hongkong", 30, f[2], f[3], &eb) != 0 ||
        trust_certs_issue(f[0], f[1], &req, f[4], f[5], &eb) != 0) {
        fprintf(stderr, "fuzz_contract setup: %s\n", eb.msg);
        abort();
    }
    FILE *out = fopen(bundle, "w");
    for (int i = 0; out != NULL && i < 3; i += 2) {
        FILE *in = fopen(f[i], "r");
        char buf[4096];
        size_t n;
        while (in != NULL && (n = fread(buf, 1, sizeof(buf), in)) > 0) {
            fwrite(buf, 1, n, out);
        }
        if (in != NULL) {
            fclose(in);
        }
    }
    if (out == NULL || fclose(out) != 0) {
        abort();
    }
    conf_tls cfg = {.cert = f[4], .key = f[5], .trust_bundle = bundle};
    if (trust_tls_new(&tls, &cfg, &eb) != 0) {
        fprintf(stderr, "fuzz_contract setup: %s\n", eb.msg);
        abort();
    }
    for (int i = 0; i < 6; i++) {
        unlink(f[i]);
    }
    unlink(bundle);
    rmdir(dir);
    now = (int64_t)time(NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (tls == NULL) {
        setup();
    }
    trust_contract *c = NULL;
    bg_errbuf eb = {{0}};
    if (trust_contract_decode(&c, data, size, &eb) != 0) {
        assert(c == NULL);
        assert(strncmp(eb.msg, "contract: ", 10) == 0);
        return 0;
    }
    bg_buf again;
    bg_buf_init(&again);
    int rc = trust_contract_encode(c, &again, &eb);
    assert(rc == 0 && again.len == size && memcmp(again.data, data, size) == 0);
    (void)rc;
    bg_buf_dispose(&again);
    eb.msg[0] = '\0';
    if (trust_contract_verify(c, tls, now, &eb) != 0) {
        assert(!trust_contract_is_verified(c));
        assert(strncmp(eb.msg, "contract: ", 10) == 0);
    }
    trust_contract_free(c);
    return 0;
}
