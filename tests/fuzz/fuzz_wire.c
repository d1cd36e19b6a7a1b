/* tests/fuzz/fuzz_wire.c: arbitrary bytes into every decoder of space/wire.h (query, result,
 * leg, leg answer). None may crash, leak or read out of bounds, and each either succeeds or
 * says BG_ERR_INVAL (BG_ERR_NOMEM only if the machine runs out). What decodes must encode
 * again (encoders and decoders share their rules), and that encoding must decode to a value
 * that encodes to exactly the same bytes (the wire form is stable after one round). */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "space/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef int (*decode_fn)(const uint8_t *, size_t, void *);
typedef int (*encode_fn)(const void *, uint8_t **, size_t *);
typedef void (*dispose_fn)(void *);

static int query_decode(const uint8_t *b, size_t n, void *o)
{
    return space_query_decode(b, n, o);
}
static int query_encode(const void *i, uint8_t **o, size_t *n)
{
    return space_query_encode(i, o, n);
}
static void query_dispose(void *q)
{
    (void)q;
}
static int result_decode(const uint8_t *b, size_t n, void *o)
{
    return space_result_decode(b, n, o);
}
static int result_encode(const void *i, uint8_t **o, size_t *n)
{
    return space_result_encode(i, o, n);
}
static void result_dispose(void *r)
{
    space_result_dispose(r);
}
static int leg_decode(const uint8_t *b, size_t n, void *o)
{
    return space_leg_decode(b, n, o);
}
static int leg_encode(const void *i, uint8_t **o, size_t *n)
{
    return space_leg_encode(i, o, n);
}
static void leg_dispose(void *l)
{
    space_leg_dispose(l);
}
static int answer_decode(const uint8_t *b, size_t n, void *o)
{
    return space_leg_answer_decode(b, n, o);
}
static int answer_encode(const void *i, uint8_t **o, size_t *n)
{
    return space_leg_answer_encode(i, o, n);
}
static void answer_dispose(void *a)
{
    space_leg_answer_dispose(a);
}

static const struct codec {
    decode_fn decode;
    encode_fn encode;
    dispose_fn dispose;
    size_t size;
} codecs[] = {
    {query_decode, query_encode, query_dispose, sizeof(space_query)},
    {result_decode, result_encode, result_dispose, sizeof(space_result)},
    {leg_decode, leg_encode, leg_dispose, sizeof(space_leg)},
    {answer_decode, answer_encode, answer_dispose, sizeof(space_leg_answer)},
};

static void one(const struct codec *c, const uint8_t *data, size_t size)
{
    void *v = malloc(c->size), *w = malloc(c->size);
    if (v == NULL || w == NULL) {
        abort();
    }
    int rc = c->decode(data, size, v);
    assert(rc == 0 || rc == BG_ERR_INVAL || rc == BG_ERR_NOMEM);
    if (rc == 0) {
        uint8_t *e1 = NULL, *e2 = NULL;
        size_t n1 = 0, n2 = 0;
        rc = c->encode(v, &e1, &n1);
        assert(rc == 0 || rc == BG_ERR_NOMEM);
        if (rc == 0) {
            rc = c->decode(e1, n1, w);
            assert(rc == 0 || rc == BG_ERR_NOMEM);
            if (rc == 0) {
                rc = c->encode(w, &e2, &n2);
                assert(rc == 0 || rc == BG_ERR_NOMEM);
                assert(rc != 0 || (n1 == n2 && memcmp(e1, e2, n1) == 0));
                free(e2);
                c->dispose(w);
            }
            free(e1);
        }
        c->dispose(v);
    }
    (void)rc;
    free(v);
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < sizeof(codecs) / sizeof(codecs[0]); i++) {
        one(&codecs[i], data, size);
    }
    return 0;
}
