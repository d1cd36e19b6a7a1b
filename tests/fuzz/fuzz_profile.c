/* tests/fuzz/fuzz_profile.c: arbitrary bytes into the city profile loader. It must never crash,
 * leak or read out of bounds, and must either return a whole, consistent profile or a
 * "name:line: ..." error with the output untouched. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "conf/profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    conf_profile *p = NULL;
    bg_errbuf eb;
    eb.msg[0] = 0;
    int rv = conf_profile_load_buffer(&p, "/fuzz/profile.yaml", data, size, &eb);
    if (rv == 0) {
        assert(p != NULL && p->city != NULL && p->language != NULL && p->law != NULL);
        assert(p->npurposes >= 1 && p->noperations >= 1 && p->nlegal_bases >= 1);
        assert(p->min_cell_size >= 1 && p->max_duration_days >= 1);
        for (size_t i = 0; i < p->nlegal_bases; i++) {
            assert(p->legal_bases[i].ncanonical == 1);
        }
        for (size_t i = 0; i < p->noperations; i++) {
            assert(p->operations[i].ncanonical >= 1);
            assert(conf_canon_is_known(CONF_CANON_OPERATION, p->operations[i].canonical[0]));
        }
        conf_profile_free(p);
    } else {
        assert(p == NULL);
        assert(strncmp(eb.msg, "/fuzz/profile.yaml", 18) == 0);
    }
    return 0;
}
