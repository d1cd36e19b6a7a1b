/* tests/fuzz/fuzz_h2.c: raw bytes, after a valid client preface, into a real gateway worker's
 * HTTP/2 server session (h2c listener with a test identity, built-in upstream), so the whole
 * request path - nghttp2 callbacks, classification, pipeline stages, responses - runs on
 * hostile input. The connection is a socketpair; the loop runs until it settles. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../unit/gateway/harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gwt *fixture(void)
{
    static gwt *t;
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL || gwt_init(t, NULL) != 0) {
            fprintf(stderr, "fuzz_h2: setup failed: %s\n", t ? t->eb.msg : "nomem");
            abort();
        }
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    gwt *t = fixture();
    int fd = gwt_connect(t);
    if (fd < 0) {
        return 0;
    }
    if (write(fd, preface, sizeof(preface) - 1) < 0) {
        close(fd);
        return 0;
    }
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off > 65536 ? 65536 : size - off);
        if (n <= 0) {
            break;
        }
        off += (size_t)n;
        gwt_run(t);
    }
    gwt_run(t);
    uint8_t sink[65536];
    while (read(fd, sink, sizeof(sink)) > 0) {
    }
    close(fd);
    gwt_run(t); /* the gateway sees EOF and frees the connection */
    return 0;
}
