/* hpa.c - Kubernetes' HPA decision for one per-instance metric; see hpa.h. Each step names
 * the K8s v1.28 function (pkg/controller/podautoscaler) whose behaviour it copies. */
#include "hpa.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define HOUR_MS 3600000ull
#define MAX_PERIOD_MS 1800000ull /* K8s: periodSeconds <= 1800 */

void sl_hpa_conf_defaults(sl_hpa_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    c->min = 1;
    c->tolerance = 0.1;
    c->up.window_ms = 0;
    c->up.policies[0] = (sl_hpa_policy_t){SL_HPA_PERCENT, 100, 15000};
    c->up.policies[1] = (sl_hpa_policy_t){SL_HPA_PODS, 4, 15000};
    c->up.npolicies = 2;
    c->up.select = SL_HPA_SELECT_MAX;
    c->down.window_ms = 300000;
    c->down.policies[0] = (sl_hpa_policy_t){SL_HPA_PERCENT, 100, 15000};
    c->down.npolicies = 1;
    c->down.select = SL_HPA_SELECT_MAX;
}

static const char *check_behavior(const sl_hpa_behavior_t *b)
{
    if (b->window_ms > HOUR_MS)
        return "a stabilization window is at most one hour";
    if (b->select != SL_HPA_SELECT_MAX && b->select != SL_HPA_SELECT_MIN &&
        b->select != SL_HPA_SELECT_DISABLED)
        return "select is max, min or disabled";
    if (b->npolicies < 1 || b->npolicies > SL_HPA_MAX_POLICIES)
        return "each direction has 1 to 4 policies";
    for (unsigned i = 0; i < b->npolicies; i++) {
        const sl_hpa_policy_t *p = &b->policies[i];
        if (p->type != SL_HPA_PODS && p->type != SL_HPA_PERCENT)
            return "a policy's type is pods or percent";
        if (p->value == 0)
            return "a policy's value is greater than 0";
        if (p->period_ms == 0 || p->period_ms > MAX_PERIOD_MS)
            return "a policy's period is 1 ms to 30 min";
    }
    return NULL;
}

int sl_hpa_conf_check(const sl_hpa_conf_t *c, const char **why)
{
    const char *w = NULL;
    if (!c)
        w = "no configuration";
    else if (c->max < 1)
        w = "max is at least 1";
    else if (c->max < c->min)
        w = "max is at least min";
    else if (!(c->target > 0) || !isfinite(c->target))
        w = "target is a number greater than 0";
    else if (!(c->tolerance >= 0) || !isfinite(c->tolerance))
        w = "tolerance is a number of at least 0";
    else if (!(w = check_behavior(&c->up)))
        w = check_behavior(&c->down);
    if (why)
        *why = w;
    return w ? SL_EINVAL : 0;
}

void sl_hpa_init(sl_hpa_state_t *s)
{
    memset(s, 0, sizeof(*s));
}

/* ---- the reason line ---- */

typedef struct out {
    char *p;
    size_t cap, len;
} out_t;

static void say(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(out_t *o, const char *fmt, ...)
{
    if (!o->p || o->cap == 0 || o->len >= o->cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - 1 - o->len;
}

/* ---- time windows, written so that no subtraction can wrap ---- */

/* K8s `timestamp.After(now - window)`: t lies strictly inside the last window_ms. A time
 * ahead of now (a caller whose clock stepped back) counts as inside. */
static int within(uint64_t t, uint64_t window_ms, uint64_t now)
{
    return t > now || now - t < window_ms;
}

/* A double to an integer without an undefined conversion: saturates beyond +-9e18, NaN
 * gives 0. Truncates toward zero, as Go's int32(float64) does. */
static int64_t sat_i64(double x)
{
    if (isnan(x))
        return 0;
    if (x <= -9.0e18)
        return -INT64_MAX;
    if (x >= 9.0e18)
        return INT64_MAX;
    return (int64_t)x;
}

static uint32_t sat_u32(int64_t v)
{
    return v < 0 ? 0 : v > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* ---- 1. the replica calculator ---- */

/* ReplicaCalculator.calcPlainMetricReplicas (and GetResourceReplicas when c->utilization):
 * the recommended count from the ready instances' average, with missing and unready
 * instances filled in only where that makes the change more cautious. Returns the count,
 * or in->current when the change is too small or the fill-in reverses its direction.
 * Writes e.g. "cpu 90.0 > target 70.0 (ratio 1.29)" to o. */
static uint32_t recommend(const sl_hpa_conf_t *c, const sl_hpa_input_t *in, const char *name,
                          out_t *o)
{
    double sum = 0;
    for (uint32_t i = 0; i < in->nready; i++)
        sum += in->ready_values[i];
    double avg = sum / in->nready;
    double ratio = avg / c->target;
    const char *cmp = ratio > 1.0 ? ">" : ratio < 1.0 ? "<" : "=";
    say(o, "%s %.1f %s target %.1f (ratio %.2f", name, avg, cmp, c->target, ratio);

    /* K8s counts unready instances only on a scale-up: their load is about to arrive. */
    int up_with_unready = in->unready > 0 && ratio > 1.0;
    if (!up_with_unready && in->missing == 0) {
        if (in->unready > 0)
            say(o, "; %u unready ignored", in->unready);
        if (fabs(1.0 - ratio) <= c->tolerance) {
            say(o, ", within tolerance %.2f)", c->tolerance);
            return in->current;
        }
        say(o, ")");
        /* ceil(usageRatio * readyPodCount), computed as ceil(sum / target): the same value
         * with one rounding instead of three, so that 10 instances at 77 of 70 give 11, not
         * the 12 that 1.1 * 10 = 11.000000000000002 would. */
        return sat_u32(sat_i64(ceil(sum / c->target)));
    }

    double total = sum;
    uint64_t n = in->nready;
    const char *sep = "; ";
    if (in->missing > 0) {
        /* A scale-down assumes the silent instances are at the target (a utilization
         * metric: at 100 % of their request, or the target if above), a scale-up that
         * they are idle, so that a missing sample never makes the change bigger. At
         * exactly ratio 1 nothing is filled in (K8s 1.28: `else if usageRatio > 1.0`). */
        if (ratio < 1.0) {
            double fill = c->utilization ? fmax(100.0, c->target) : c->target;
            total += fill * in->missing;
            n += in->missing;
            say(o, "%s%u missing as %.1f", sep, in->missing, fill);
        } else if (ratio > 1.0) {
            n += in->missing;
            say(o, "%s%u missing as 0", sep, in->missing);
        } else {
            say(o, "%s%u missing not counted", sep, in->missing);
        }
        sep = ", ";
    }
    if (up_with_unready) {
        n += in->unready;
        say(o, "%s%u unready as 0", sep, in->unready);
    } else if (in->unready > 0) {
        say(o, "%s%u unready ignored", sep, in->unready);
    }
    double nratio = total / (double)n / c->target;
    say(o, ": ratio %.2f", nratio);
    if (fabs(1.0 - nratio) <= c->tolerance) {
        say(o, ", within tolerance %.2f)", c->tolerance);
        return in->current;
    }
    if ((ratio < 1.0 && nratio > 1.0) || (ratio > 1.0 && nratio < 1.0)) {
        say(o, ", direction reversed)");
        return in->current;
    }
    /* ceil(newUsageRatio * len(metrics)), as above */
    uint32_t r = sat_u32(sat_i64(ceil(total / c->target)));
    /* K8s 1.28: with unready instances counted, n may exceed current, and a ratio below 1
     * could still ask for more instances than there are (or above 1, for fewer). */
    if ((nratio < 1.0 && r > in->current) || (nratio > 1.0 && r < in->current)) {
        say(o, ", %u would reverse the direction)", r);
        return in->current;
    }
    say(o, ")");
    return r;
}

/* ---- 2. stabilization ---- */

static uint64_t max_window(const sl_hpa_conf_t *c)
{
    return c->up.window_ms > c->down.window_ms ? c->up.window_ms : c->down.window_ms;
}

/* Recommendations no window can see again go (K8s reuses such a slot for the next one). */
static void expire_recs(sl_hpa_state_t *s, uint64_t keep_ms, uint64_t now)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->nrecs; i++)
        if (within(s->recs[i].t_ms, keep_ms, now))
            s->recs[k++] = s->recs[i];
    s->nrecs = k;
}

/* Append r at now. Every older entry whose value lies within [lowest, highest] of the
 * entries newer than it is dropped first: a newer entry at least as high outlives it in
 * every max, and one at least as low in every min (newer entries stay in any window an
 * older one is in), so no window's result changes. */
static void record(sl_hpa_state_t *s, uint32_t r, uint64_t now)
{
    uint32_t lo = r, hi = r, k = s->nrecs;
    for (uint32_t i = s->nrecs; i-- > 0;) {
        uint32_t v = s->recs[i].replicas;
        if (v >= lo && v <= hi)
            continue;
        if (v < lo)
            lo = v;
        else
            hi = v;
        s->recs[--k] = s->recs[i]; /* kept entries gather at the top, in order */
    }
    uint32_t kept = s->nrecs - k;
    memmove(&s->recs[0], &s->recs[k], kept * sizeof(s->recs[0]));
    if (kept == SL_HPA_RECS) {
        memmove(&s->recs[0], &s->recs[1], (kept - 1) * sizeof(s->recs[0]));
        kept--;
    }
    s->recs[kept].t_ms = now;
    s->recs[kept].replicas = r;
    s->nrecs = kept + 1;
}

/* stabilizeRecommendationWithBehaviors: the lowest recommendation of the scale-up window
 * and the highest of the scale-down window (the new one included in both) bound how far
 * current may move: up only as far as every recent recommendation agrees, down only as
 * far as every recent one allows. Then the new recommendation is recorded. */
static uint32_t stabilize(sl_hpa_state_t *s, const sl_hpa_conf_t *c, uint32_t current,
                          uint32_t desired, uint64_t now, out_t *o)
{
    uint32_t up = desired, down = desired;
    for (uint32_t i = 0; i < s->nrecs; i++) {
        uint32_t v = s->recs[i].replicas;
        if (within(s->recs[i].t_ms, c->up.window_ms, now) && v < up)
            up = v;
        if (within(s->recs[i].t_ms, c->down.window_ms, now) && v > down)
            down = v;
    }
    uint32_t r = current;
    if (r < up)
        r = up;
    if (r > down)
        r = down;
    record(s, desired, now);
    if (r != desired) {
        /* K8s names the direction by desired >= current */
        if (desired >= current)
            say(o, "; scale-up stabilized (min %u over %g s)", up, c->up.window_ms / 1000.0);
        else
            say(o, "; scale-down stabilized (max %u over %g s)", down, c->down.window_ms / 1000.0);
    }
    return r;
}

/* ---- 3. scaling policies ---- */

static uint64_t longest_period(const sl_hpa_conf_t *c)
{
    uint64_t m = 0;
    for (unsigned i = 0; i < c->up.npolicies && i < SL_HPA_MAX_POLICIES; i++)
        if (c->up.policies[i].period_ms > m)
            m = c->up.policies[i].period_ms;
    for (unsigned i = 0; i < c->down.npolicies && i < SL_HPA_MAX_POLICIES; i++)
        if (c->down.policies[i].period_ms > m)
            m = c->down.policies[i].period_ms;
    return m;
}

/* Events no policy period can see again go. K8s marks them "outdated" per direction by
 * that direction's longest period, yet both directions' limits read both lists; keeping
 * every event for the longest period of all makes each policy count exactly the events
 * within its own period. */
static void expire_events(sl_hpa_state_t *s, uint64_t keep_ms, uint64_t now)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->nup; i++)
        if (within(s->up[i].t_ms, keep_ms, now))
            s->up[k++] = s->up[i];
    s->nup = k;
    k = 0;
    for (uint32_t i = 0; i < s->ndown; i++)
        if (within(s->down[i].t_ms, keep_ms, now))
            s->down[k++] = s->down[i];
    s->ndown = k;
}

/* getReplicasChangePerPeriod for both lists: the count at the start of the period,
 * current - added + removed within it. */
static int64_t period_start(const sl_hpa_state_t *s, uint32_t current, uint64_t period_ms,
                            uint64_t now)
{
    int64_t r = current;
    for (uint32_t i = 0; i < s->nup; i++)
        if (within(s->up[i].t_ms, period_ms, now))
            r -= s->up[i].change;
    for (uint32_t i = 0; i < s->ndown; i++)
        if (within(s->down[i].t_ms, period_ms, now))
            r += s->down[i].change;
    return r;
}

/* calculateScaleUpLimitWithScalingRules: each policy's ceiling from the period start
 * (PERCENT rounded up, or +100 % of 1 could never add one); MAX takes the highest. */
static int64_t up_limit(const sl_hpa_state_t *s, const sl_hpa_behavior_t *b, uint32_t current,
                        uint64_t now)
{
    if (b->select == SL_HPA_SELECT_DISABLED)
        return current;
    int64_t res = b->select == SL_HPA_SELECT_MIN ? INT64_MAX : INT64_MIN;
    for (unsigned i = 0; i < b->npolicies; i++) {
        const sl_hpa_policy_t *p = &b->policies[i];
        int64_t start = period_start(s, current, p->period_ms, now), v;
        if (p->type == SL_HPA_PODS)
            v = start + p->value;
        else
            v = sat_i64(ceil((double)start * (1.0 + p->value / 100.0)));
        if (b->select == SL_HPA_SELECT_MIN ? v < res : v > res)
            res = v;
    }
    return res;
}

/* calculateScaleDownLimitWithBehaviors: each policy's floor from the period start
 * (PERCENT truncated, as K8s's int32() conversion: 50 % of 5 leaves 2); MAX takes the
 * lowest floor (the biggest change), MIN the highest. */
static int64_t down_limit(const sl_hpa_state_t *s, const sl_hpa_behavior_t *b, uint32_t current,
                          uint64_t now)
{
    if (b->select == SL_HPA_SELECT_DISABLED)
        return current;
    int64_t res = b->select == SL_HPA_SELECT_MIN ? INT64_MIN : INT64_MAX;
    for (unsigned i = 0; i < b->npolicies; i++) {
        const sl_hpa_policy_t *p = &b->policies[i];
        int64_t start = period_start(s, current, p->period_ms, now), v;
        if (p->type == SL_HPA_PODS)
            v = start - p->value;
        else
            v = sat_i64((double)start * (1.0 - p->value / 100.0));
        if (b->select == SL_HPA_SELECT_MIN ? v > res : v < res)
            res = v;
    }
    return res;
}

/* convertDesiredReplicasWithBehaviorRate: a scale-up stops at the lower of max and the
 * policies' limit (never below current), a scale-down at the higher of min and theirs
 * (never above current). current is within [min, max] here. */
static uint32_t limit_rate(const sl_hpa_state_t *s, const sl_hpa_conf_t *c, uint32_t current,
                           uint32_t desired, uint64_t now, out_t *o)
{
    if (desired > current) {
        int64_t lim = up_limit(s, &c->up, current, now);
        if (lim < current)
            lim = current; /* recent scale-ups used the whole budget */
        if ((int64_t)c->max > lim) {
            if (desired > lim) {
                if (c->up.select == SL_HPA_SELECT_DISABLED)
                    say(o, "; scale-up disabled");
                else
                    say(o, "; limited by scale-up policy to %lld", (long long)lim);
                return (uint32_t)lim;
            }
        } else if (desired > c->max) {
            say(o, "; clamped to max %u", c->max);
            return c->max;
        }
    } else if (desired < current) {
        int64_t lim = down_limit(s, &c->down, current, now);
        if (lim > current)
            lim = current;
        if ((int64_t)c->min < lim) {
            if (desired < lim) {
                if (c->down.select == SL_HPA_SELECT_DISABLED)
                    say(o, "; scale-down disabled");
                else
                    say(o, "; limited by scale-down policy to %lld", (long long)lim);
                return (uint32_t)lim;
            }
        } else if (desired < c->min) {
            say(o, "; clamped to min %u", c->min);
            return c->min;
        }
    }
    return desired;
}

/* ---- the decision ---- */

static uint32_t result(out_t *o, uint32_t from, uint32_t to)
{
    if (from == to)
        say(o, ": keep %u", from);
    else
        say(o, ": %u -> %u", from, to);
    return to;
}

uint32_t sl_hpa_decide(sl_hpa_state_t *s, const sl_hpa_conf_t *c, const sl_hpa_input_t *in,
                       uint64_t now_ms, char *reason, size_t cap)
{
    out_t o = {reason, cap, 0};
    if (reason && cap)
        reason[0] = '\0';
    const char *why;
    if (sl_hpa_conf_check(c, &why) != 0) {
        say(&o, "invalid configuration: %s", why);
        return result(&o, in->current, in->current);
    }
    const char *name = c->metric ? c->metric : "metric";

    /* recordInitialRecommendation: the first decision remembers the count it found, so a
     * restarted supervisor does not scale down before a full window has passed. */
    if (!s->seeded) {
        s->seeded = 1;
        s->nrecs = 0;
        record(s, in->current, now_ms);
    }
    expire_recs(s, max_window(c), now_ms);
    expire_events(s, longest_period(c), now_ms);

    /* reconcileAutoscaler: a count outside [min, max] is brought back at once, without
     * metrics, windows or policies. K8s reads a count of 0 with min > 0 as "autoscaling
     * switched off by hand"; here 0 means every instance is gone, so it goes to min. */
    if (in->current > c->max) {
        say(&o, "current %u above max %u", in->current, c->max);
        return result(&o, in->current, c->max);
    }
    if (in->current < c->min) {
        say(&o, "current %u below min %u", in->current, c->min);
        return result(&o, in->current, c->min);
    }

    /* A failed metric computation leaves the count alone and records nothing. */
    if (in->nready == 0 || !in->ready_values) {
        say(&o, "no ready instance reports %s", name);
        return result(&o, in->current, in->current);
    }
    for (uint32_t i = 0; i < in->nready; i++) {
        double v = in->ready_values[i];
        if (!isfinite(v) || v < 0) {
            say(&o, "invalid %s sample %g", name, v);
            return result(&o, in->current, in->current);
        }
    }

    uint32_t rec = recommend(c, in, name, &o);
    /* Stabilization and policies describe themselves apart, so that the metric's own
     * recommendation can be named before them when they changed it. */
    char tail[160] = "";
    out_t t = {tail, sizeof(tail), 0};
    uint32_t st = stabilize(s, c, in->current, rec, now_ms, &t);
    uint32_t d = limit_rate(s, c, in->current, st, now_ms, &t);
    if (rec != d)
        say(&o, " recommends %u", rec);
    say(&o, "%s", tail);
    return result(&o, in->current, d);
}

void sl_hpa_applied(sl_hpa_state_t *s, uint64_t now_ms, uint32_t from, uint32_t to)
{
    if (from == to)
        return;
    uint32_t *n = to > from ? &s->nup : &s->ndown;
    sl_hpa_event_t *ev = to > from ? s->up : s->down;
    if (*n == SL_HPA_EVENTS) {
        uint64_t sum = (uint64_t)ev[1].change + ev[0].change;
        ev[1].change = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
        memmove(&ev[0], &ev[1], (SL_HPA_EVENTS - 1) * sizeof(ev[0]));
        (*n)--;
    }
    ev[*n].t_ms = now_ms;
    ev[*n].change = to > from ? to - from : from - to;
    (*n)++;
}
