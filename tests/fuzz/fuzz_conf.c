/* tests/fuzz/fuzz_conf.c: arbitrary bytes into the config loader. It must never crash, leak
 * or read out of bounds, and must either return a whole config or a "name:line: ..." error. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "conf/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    conf_gateway *cfg = NULL;
    bg_errbuf eb;
    eb.msg[0] = 0;
    int rv = conf_gateway_load_buffer(&cfg, "/fuzz/conf.yaml", data, size, &eb);
    if (rv == 0) {
        assert(cfg != NULL && cfg->city != NULL && cfg->nlisteners >= 1);
        assert(cfg->tls.cert != NULL && cfg->ledger_path != NULL);
        conf_gateway_free(cfg);
    } else {
        assert(cfg == NULL);
        assert(strncmp(eb.msg, "/fuzz/conf.yaml", 15) == 0);
    }
    return 0;
}
