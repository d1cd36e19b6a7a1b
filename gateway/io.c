/* gateway/io.c: see io.h. */
#include "gateway/io.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "base/err.h"

/* Largest single write; TLS records are 16 KiB, so this is a few records per syscall. */
#define WRITE_CHUNK (64 * 1024)

static void set_err(gw_io *io, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    if (io->ssl != NULL && e != 0) {
        char buf[160];
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(io->err, sizeof(io->err), "%s: %s", what, buf);
    } else if (errno != 0) {
        snprintf(io->err, sizeof(io->err), "%s: %s", what, strerror(errno));
    } else {
        snprintf(io->err, sizeof(io->err), "%s", what);
    }
    ERR_clear_error();
}

static void want_write(gw_io *io, bool on)
{
    if (on && !io->wev_added) {
        event_add(&io->wev, NULL);
        io->wev_added = true;
    } else if (!on && io->wev_added) {
        event_del(&io->wev);
        io->wev_added = false;
    }
}

static void want_read(gw_io *io, bool on)
{
    if (on && !io->rev_added) {
        event_add(&io->rev, NULL);
        io->rev_added = true;
    } else if (!on && io->rev_added) {
        event_del(&io->rev);
        io->rev_added = false;
    }
}

/* Advances the TLS handshake; calls connected() or failed() when it ends. */
static void handshake(gw_io *io)
{
    ERR_clear_error();
    int r = SSL_do_handshake(io->ssl);
    if (r == 1) {
        io->state = GW_IO_OPEN;
        want_write(io, false);
        want_read(io, true);
        io->ops->connected(io->owner);
        return;
    }
    int e = SSL_get_error(io->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        want_write(io, false);
        want_read(io, true);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        want_write(io, true);
        return;
    }
    errno = (e == SSL_ERROR_SYSCALL && r == 0) ? 0 : errno;
    set_err(io, e == SSL_ERROR_SYSCALL && r == 0 ? "tls handshake: connection closed"
                                                   : "tls handshake");
    io->ops->failed(io->owner, io->err);
}

/* Read readiness: handshake progress, or the owner's data. */
static void on_read(evutil_socket_t fd, short what, void *arg)
{
    gw_io *io = arg;
    (void)fd;
    (void)what;
    if (io->state == GW_IO_HANDSHAKING) {
        handshake(io);
        return;
    }
    if (io->state == GW_IO_OPEN) {
        io->ops->readable(io->owner);
    }
}

/* Write readiness: connect completion, handshake progress, or blocked output draining. */
static void on_write(evutil_socket_t fd, short what, void *arg)
{
    gw_io *io = arg;
    (void)what;
    if (io->state == GW_IO_CONNECTING) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
            errno = soerr;
            set_err(io, "connect");
            io->ops->failed(io->owner, io->err);
            return;
        }
        if (io->ssl != NULL) {
            io->state = GW_IO_HANDSHAKING;
            handshake(io);
            return;
        }
        io->state = GW_IO_OPEN;
        want_write(io, gw_io_pending(io) > 0);
        want_read(io, true);
        io->ops->connected(io->owner);
        return;
    }
    if (io->state == GW_IO_HANDSHAKING) {
        handshake(io);
        return;
    }
    if (gw_io_flush(io) != 0) {
        io->ops->failed(io->owner, io->err);
        return;
    }
    if (gw_io_pending(io) < GW_IO_LOW) {
        io->ops->writable(io->owner);
    }
}

static void init_common(gw_io *io, struct event_base *base, evutil_socket_t fd,
                        struct ssl_st *ssl, const gw_io_ops *ops, void *owner)
{
    memset(io, 0, sizeof(*io));
    io->base = base;
    io->fd = fd;
    io->ssl = ssl;
    io->ops = ops;
    io->owner = owner;
    bg_buf_init(&io->out);
    event_assign(&io->rev, base, fd, EV_READ | EV_PERSIST, on_read, io);
    event_assign(&io->wev, base, fd, EV_WRITE | EV_PERSIST, on_write, io);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (ssl != NULL) {
        SSL_set_fd(ssl, fd);
        /* one read(2) per buffer-full instead of one per record header and body */
        SSL_set_read_ahead(ssl, 1);
        SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
}

int gw_io_init_accepted(gw_io *io, struct event_base *base, evutil_socket_t fd,
                        struct ssl_st *ssl, const gw_io_ops *ops, void *owner)
{
    if (evutil_make_socket_nonblocking(fd) != 0) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        return BG_ERR_IO;
    }
    init_common(io, base, fd, ssl, ops, owner);
    if (ssl != NULL) {
        SSL_set_accept_state(ssl);
        io->state = GW_IO_HANDSHAKING;
    } else {
        io->state = GW_IO_OPEN;
    }
    want_read(io, true);
    return 0;
}

int gw_io_init_connect(gw_io *io, struct event_base *base, const struct sockaddr *sa,
                       socklen_t salen, struct ssl_st *ssl, const gw_io_ops *ops, void *owner)
{
    evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        memset(io, 0, sizeof(*io));
        io->fd = -1;
        set_err(io, "socket");
        SSL_free(ssl);
        return BG_ERR_IO;
    }
    init_common(io, base, fd, ssl, ops, owner);
    if (ssl != NULL) {
        SSL_set_connect_state(ssl);
    }
    io->state = GW_IO_CONNECTING;
    if (connect(fd, sa, salen) != 0 && errno != EINPROGRESS) {
        set_err(io, "connect");
        char keep[sizeof(io->err)];
        memcpy(keep, io->err, sizeof(keep));
        gw_io_dispose(io);
        memcpy(io->err, keep, sizeof(keep));
        return BG_ERR_IO;
    }
    want_write(io, true); /* completion (or failure) shows as writability */
    return 0;
}

/* Lingering close: the socket already sent FIN; what the peer still sends is read and
 * dropped, so that closing does not turn into a RST that could destroy our last bytes (a TLS
 * alert, a GOAWAY) before the peer has read them. */
static void on_linger(evutil_socket_t fd, short what, void *arg)
{
    uint8_t buf[4096];
    (void)what;
    (void)arg;
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    evutil_closesocket(fd);
}

static void close_lingering(struct event_base *base, evutil_socket_t fd)
{
    uint8_t buf[4096];
    struct timeval tv = {1, 0};
    shutdown(fd, SHUT_WR);
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    if (event_base_once(base, fd, EV_READ, on_linger, NULL, &tv) != 0) {
        evutil_closesocket(fd);
    }
}

void gw_io_dispose(gw_io *io)
{
    if (io->base == NULL) {
        return;
    }
    want_read(io, false);
    want_write(io, false);
    if (io->ssl != NULL) {
        if (io->state == GW_IO_OPEN) {
            ERR_clear_error();
            SSL_shutdown(io->ssl); /* best effort close_notify; non-blocking */
        }
        SSL_free(io->ssl);
        io->ssl = NULL;
    }
    if (io->fd >= 0) {
        if (io->state == GW_IO_CONNECTING) {
            evutil_closesocket(io->fd);
        } else {
            close_lingering(io->base, io->fd);
        }
        io->fd = -1;
    }
    bg_buf_dispose(&io->out);
    io->base = NULL;
    ERR_clear_error();
}

ssize_t gw_io_read(gw_io *io, uint8_t *buf, size_t cap)
{
    if (io->ssl == NULL) {
        ssize_t n = read(io->fd, buf, cap);
        if (n > 0) {
            return n;
        }
        if (n == 0) {
            return GW_IO_EOF;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return GW_IO_AGAIN;
        }
        set_err(io, "read");
        return GW_IO_ERROR;
    }
    ERR_clear_error();
    int want = cap > INT32_MAX ? INT32_MAX : (int)cap;
    int n = SSL_read(io->ssl, buf, want);
    if (n > 0) {
        return n;
    }
    int e = SSL_get_error(io->ssl, n);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return GW_IO_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        want_write(io, true); /* e.g. a key update; on_write flushes and we read again */
        return GW_IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return GW_IO_EOF;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && (n == 0 || errno == 0 || errno == ECONNRESET)) {
            return GW_IO_EOF; /* peer closed without close_notify */
        }
        set_err(io, "tls read");
        return GW_IO_ERROR;
    default:
        set_err(io, "tls read");
        return GW_IO_ERROR;
    }
}

int gw_io_append(gw_io *io, const void *p, size_t len)
{
    /* compact once the written prefix dominates, keeping the buffer bounded */
    if (io->out_off > 0 && io->out_off >= io->out.len / 2) {
        memmove(io->out.data, io->out.data + io->out_off, io->out.len - io->out_off);
        io->out.len -= io->out_off;
        io->out_off = 0;
    }
    return bg_buf_append(&io->out, p, len);
}

size_t gw_io_pending(const gw_io *io)
{
    return io->out.len - io->out_off;
}

int gw_io_flush(gw_io *io)
{
    if (io->state != GW_IO_OPEN) {
        return 0; /* connect/handshake in progress: output waits */
    }
    while (io->out_off < io->out.len) {
        size_t left = io->out.len - io->out_off;
        size_t n = left < WRITE_CHUNK ? left : WRITE_CHUNK;
        const uint8_t *p = io->out.data + io->out_off;
        if (io->ssl == NULL) {
            ssize_t w = send(io->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    want_write(io, true);
                    return 0;
                }
                set_err(io, "write");
                return BG_ERR_IO;
            }
            io->out_off += (size_t)w;
            continue;
        }
        ERR_clear_error();
        int w = SSL_write(io->ssl, p, (int)n);
        if (w > 0) {
            io->out_off += (size_t)w;
            continue;
        }
        int e = SSL_get_error(io->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            want_write(io, true);
            return 0;
        }
        set_err(io, "tls write");
        return BG_ERR_IO;
    }
    io->out.len = 0;
    io->out_off = 0;
    want_write(io, false);
    return 0;
}

void gw_io_stop_reading(gw_io *io)
{
    want_read(io, false);
}

void gw_io_yield_read(gw_io *io)
{
    if (io->ssl != NULL && SSL_has_pending(io->ssl)) {
        event_active(&io->rev, EV_READ, 0);
    }
}
