/* gateway/io.h: one non-blocking socket, cleartext or TLS, driven by the worker's event_base.
 * It replaces bufferevents on the hot path: reads go straight from the socket (or SSL_read with
 * read-ahead) into the owner's parser, writes are attempted at once and only when the kernel
 * pushes back is write interest registered, so a busy connection costs about one read and one
 * write per loop iteration and no epoll_ctl churn. The owner (gw_conn, gw_client) keeps full
 * control of its lifetime: callbacks never run after gw_io_dispose(). This is the one place in
 * gateway/ that calls OpenSSL's I/O functions; contexts and identities stay in trust/. */
#ifndef GW_IO_H
#define GW_IO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "base/bytes.h"

struct ssl_st;

typedef struct gw_io_ops {
    /* The socket is readable: call gw_io_read() until it returns GW_IO_AGAIN. */
    void (*readable)(void *owner);
    /* Pending output drained (below GW_IO_LOW): the owner may produce more. */
    void (*writable)(void *owner);
    /* TCP connect and TLS handshake (if any) completed. */
    void (*connected)(void *owner);
    /* Connect, handshake or write failed, or the peer closed during the handshake: |why| says
     * what (with OpenSSL's reason when there is one). The owner disposes of the io. */
    void (*failed)(void *owner, const char *why);
} gw_io_ops;

typedef enum gw_io_state {
    GW_IO_CONNECTING = 0,
    GW_IO_HANDSHAKING,
    GW_IO_OPEN,
} gw_io_state;

/* Output above this: owners stop producing until writable() (backpressure). */
#define GW_IO_HIGH (64 * 1024)
#define GW_IO_LOW (16 * 1024)

/* Return values of gw_io_read() besides a positive byte count. */
#define GW_IO_EOF 0
#define GW_IO_AGAIN (-1)
#define GW_IO_ERROR (-2)

typedef struct gw_io {
    struct event_base *base;
    evutil_socket_t fd;
    struct ssl_st *ssl; /* owned; NULL for cleartext */
    gw_io_state state;
    struct event rev; /* persistent, added while reading is enabled */
    struct event wev; /* persistent, added only while output is blocked or connecting */
    bool wev_added;
    bool rev_added;
    bg_buf out; /* pending output; bytes [out_off, out.len) not yet written */
    size_t out_off;
    const gw_io_ops *ops;
    void *owner;
    char err[200]; /* last error, for logs */
} gw_io;

/* Takes an accepted |fd| and, for TLS, |ssl| (both owned from now on, even on error).
 * Returns 0 or BG_ERR_*; on error the fd and ssl are already released. */
int gw_io_init_accepted(gw_io *io, struct event_base *base, evutil_socket_t fd,
                        struct ssl_st *ssl, const gw_io_ops *ops, void *owner);
/* Starts a non-blocking connect to |sa|; |ssl| (owned) makes it TLS after the TCP connect.
 * Returns 0 (connected() follows) or BG_ERR_IO with io->err set; resources released then. */
int gw_io_init_connect(gw_io *io, struct event_base *base, const struct sockaddr *sa,
                       socklen_t salen, struct ssl_st *ssl, const gw_io_ops *ops, void *owner);
/* Releases everything; sends a TLS close_notify when open. Safe on a zeroed/disposed io. */
void gw_io_dispose(gw_io *io);

/* Reads up to |cap| bytes: > 0 bytes, GW_IO_EOF, GW_IO_AGAIN, or GW_IO_ERROR (io->err). */
ssize_t gw_io_read(gw_io *io, uint8_t *buf, size_t cap);
/* Queues |len| bytes for writing; 0 or BG_ERR_NOMEM. */
int gw_io_append(gw_io *io, const void *p, size_t len);
/* Writes what it can now; the rest waits for the socket. 0, or BG_ERR_IO (io->err). */
int gw_io_flush(gw_io *io);
/* Bytes queued and not yet written. */
size_t gw_io_pending(const gw_io *io);
/* The owner stopped reading before GW_IO_AGAIN (its per-callback budget): makes sure it is
 * called again next iteration even if the rest already sits inside OpenSSL, which epoll
 * cannot see. */
void gw_io_yield_read(gw_io *io);
/* Reads per readable() callback before an owner yields to other connections. */
#define GW_IO_READ_BUDGET 16
/* Stops read callbacks (e.g. after a fatal protocol error, while a GOAWAY drains). */
void gw_io_stop_reading(gw_io *io);
#endif /* GW_IO_H */
