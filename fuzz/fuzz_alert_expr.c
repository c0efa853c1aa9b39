/* fuzz_alert_expr.c - libFuzzer target for the alert rule language (sl_alert_expr_parse):
 * never reads past the input; an accepted rule has a known signal and operator, a finite
 * threshold and a selector the signal takes, and printing it back parses to the same rule;
 * a refused one reports a position inside the input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/alert_expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan catches any read beyond. */
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    sl_alert_expr_t e, again;
    char err[200], text[400];
    size_t at = 0;
    if (sl_alert_expr_parse(s, size, &e, err, sizeof(err), &at) == 0) {
        if (e.signal < 0 || e.signal >= SL_SIG__COUNT || e.op < SL_OP_GT || e.op > SL_OP_LE)
            abort();
        if (!isfinite(e.threshold))
            abort();
        if (e.selector != SL_SEL_NONE && e.selector != sl_signal_selector(e.signal))
            abort();
        size_t sl = strnlen(e.sel, sizeof(e.sel));
        if (sl == sizeof(e.sel) || (e.selector != SL_SEL_NONE) != (sl > 0))
            abort();
        int n;
        if (e.selector == SL_SEL_NONE)
            n = snprintf(text, sizeof(text), "%s %s %.17g", sl_signal_name(e.signal),
                         sl_alert_op_name(e.op), e.threshold);
        else
            n = snprintf(text, sizeof(text), "%s{%s=\"%s\"} %s %.17g", sl_signal_name(e.signal),
                         e.selector == SL_SEL_ROUTE ? "route" : "service", e.sel,
                         sl_alert_op_name(e.op), e.threshold);
        if (n <= 0 || (size_t)n >= sizeof(text))
            abort();
        if (sl_alert_expr_parse(text, (size_t)n, &again, err, sizeof(err), &at) != 0)
            abort();
        if (again.signal != e.signal || again.op != e.op || again.threshold != e.threshold ||
            again.selector != e.selector || strcmp(again.sel, e.sel) != 0)
            abort();
    } else {
        if (at > size || !err[0])
            abort();
    }
    free(s);
    return 0;
}
