/* status_page.h - the admin listener's live status page, compiled in.
 * sl_status_page holds the bytes of src/ops/status_page.html (sl_status_page_len of them,
 * then a NUL), embedded at build time by tools/embed into $(BUILD)/gen/status_page.c.
 * Serve it at GET / as text/html; charset=utf-8. The page is self-contained (inline CSS
 * and JS, no external assets) and polls the relative URL status.json, i.e. GET
 * /status.json when served at /, once a second. */
#ifndef SL_STATUS_PAGE_H
#define SL_STATUS_PAGE_H

#include <stddef.h>

extern const char sl_status_page[];
extern const size_t sl_status_page_len;

#endif
