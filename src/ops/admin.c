/* admin.c - admin endpoints; see admin.h. */
#include "admin.h"

#include <stdlib.h>
#include <string.h>

#include "../core/metrics.h"

static int path_is(const sl_http_request_t *r, const char *p)
{
    size_t n = strlen(p);
    return r->path.len == n && memcmp(r->path.p, p, n) == 0;
}

void sl_admin_handle(sl_exchange_t *x)
{
    const sl_http_request_t *r = &x->req;
    int get = r->method_id == SL_M_GET || r->method_id == SL_M_HEAD;
    if (path_is(r, "/metrics")) {
        if (!get) {
            sl_conn_error(x, 405, "method not allowed");
            return;
        }
        sl_textbuf_t t = {0};
        sl_metrics_render(&t);
        if (t.failed) {
            free(t.p);
            sl_conn_error(x, 503, "out of memory");
            return;
        }
        /* The exposition can exceed one I/O buffer: copy it into pool buffers, which
         * conn owns (and frees) whether it writes them at once or queues them. */
        char hdr[256];
        sl_worker_t *w = x->conn->w;
        int ka = sl_conn_keepalive(x);
        int n = snprintf(hdr, sizeof(hdr),
                         "HTTP/1.1 200 OK\r\nServer: sluice\r\n%.*s\r\nContent-Type: text/plain; "
                         "version=0.0.4; charset=utf-8\r\nContent-Length: %zu\r\n%s\r\n",
                         (int)w->date_len, w->date, t.len, ka ? "" : "Connection: close\r\n");
        x->status = 200;
        const char *parts[2] = {hdr, t.p};
        size_t lens[2] = {(size_t)n, r->method_id == SL_M_HEAD ? 0 : t.len};
        int ok = 1;
        for (int i = 0; i < 2 && ok; i++) {
            for (size_t off = 0; off < lens[i] && ok;) {
                sl_buf_t *b = sl_buf_get(&w->bufs);
                if (!b) {
                    ok = 0;
                    break;
                }
                size_t take = lens[i] - off < b->size ? lens[i] - off : b->size;
                memcpy(b->data, parts[i] + off, take);
                uv_buf_t ub = uv_buf_init(b->data, (unsigned)take);
                sl_conn_send(x, &ub, 1, &b, 1);
                off += take;
            }
        }
        free(t.p);
        sl_conn_end(x, ok && ka);
        return;
    }
    if (path_is(r, "/health")) {
        sl_conn_respond(x, 200, "application/json", "{\"status\":\"ok\"}\n", 16, NULL);
        return;
    }
    sl_conn_error(x, 404, "not found");
}
