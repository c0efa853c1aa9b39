/* hpa.h - the autoscaling decision: how many backend instances there should be, computed
 * as Kubernetes' HorizontalPodAutoscaler computes it for one per-instance metric (v1.28
 * pkg/controller/podautoscaler: the replica calculator, then
 * normalizeDesiredReplicasWithBehaviors: stabilization windows and scaling policies).
 * Owns: the recommendation history and the scale events of one autoscaled group, in
 * fixed-size arrays inside sl_hpa_state_t. Pure: no I/O, no clock, no allocation, no
 * locks; the caller (the supervisor) passes the time, applies the answer and says so. */
#ifndef SL_HPA_H
#define SL_HPA_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

/* A scaling policy's unit (K8s HPAScalingPolicyType). */
enum { SL_HPA_PODS = 1, SL_HPA_PERCENT = 2 };

/* How the policies of one direction combine (K8s ScalingPolicySelect): MAX allows the
 * biggest change any policy allows, MIN the smallest, DISABLED none in that direction. */
enum { SL_HPA_SELECT_MAX = 0, SL_HPA_SELECT_MIN = 1, SL_HPA_SELECT_DISABLED = 2 };

#define SL_HPA_MAX_POLICIES 4

/* At most `value` instances (PODS) or `value` percent of the count at the start of the
 * period (PERCENT) added, or removed, within any period_ms. */
typedef struct sl_hpa_policy {
    int type; /* SL_HPA_PODS or SL_HPA_PERCENT */
    uint32_t value;
    uint64_t period_ms;
} sl_hpa_policy_t;

/* One direction's behaviour (K8s HPAScalingRules). */
typedef struct sl_hpa_behavior {
    uint64_t window_ms; /* stabilization window */
    sl_hpa_policy_t policies[SL_HPA_MAX_POLICIES];
    unsigned npolicies;
    int select; /* SL_HPA_SELECT_* */
} sl_hpa_behavior_t;

typedef struct sl_hpa_conf {
    uint32_t min, max;  /* instance count bounds. min 0 lets an idle group go to zero
                         * (K8s's HPAScaleToZero); from 0 there is nothing to measure, so
                         * only the caller can start it again (e.g. on a request). */
    double target;      /* wanted metric value per instance (70: 70 % CPU; or in-flight) */
    double tolerance;   /* |ratio - 1| at or below this changes nothing (K8s: 0.1) */
    int utilization;    /* 1: values are percent of a per-instance request (CPU %): on a
                         * scale-down an instance without a sample counts as max(100, target)
                         * as GetResourceReplicas does; 0: a plain per-instance value, counted
                         * as exactly target, as GetMetricReplicas does */
    const char *metric; /* name in the reason ("cpu"); NULL: "metric". Not copied. */
    sl_hpa_behavior_t up, down;
} sl_hpa_conf_t;

/* The Kubernetes defaults: min 1, tolerance 0.1, plain metric; scale up: no window,
 * max(100 %, 4 instances) per 15 s; scale down: 300 s window, 100 % per 15 s. max and
 * target have no default (0, which sl_hpa_conf_check rejects): the caller sets them. */
void sl_hpa_conf_defaults(sl_hpa_conf_t *c);

/* 0, or SL_EINVAL with *why (if why is not NULL) set to a static English sentence. Checks
 * what K8s validation checks: min <= max, max >= 1, target > 0, tolerance >= 0, 1 to
 * SL_HPA_MAX_POLICIES policies per direction with value > 0 and a period of 1 ms to 30 min,
 * windows of at most one hour, a known type and select. */
int sl_hpa_conf_check(const sl_hpa_conf_t *c, const char **why);

/* Recommendations kept for the stabilization windows. An older recommendation that lies
 * between the lowest and the highest newer one can never be a window's min or max again
 * and is dropped, so the history holds at most one entry per distinct count: exact for
 * max < SL_HPA_RECS whatever the windows and the call rate. Beyond that, when full, the
 * oldest entry goes first. */
#define SL_HPA_RECS 128
/* Scale events kept per direction for the policies' periods. When full, the oldest event
 * is merged into the next one (its change then counts longer: a stricter limit, never a
 * looser one). */
#define SL_HPA_EVENTS 64

/* Private: a recommendation, and a scale event (change > 0, its direction by list). */
typedef struct sl_hpa_rec {
    uint64_t t_ms;
    uint32_t replicas;
} sl_hpa_rec_t;
typedef struct sl_hpa_event {
    uint64_t t_ms;
    uint32_t change;
} sl_hpa_event_t;

/* One group's memory between decisions (about 4 KiB, no pointers: may be copied or
 * embedded). Private: use the functions. */
typedef struct sl_hpa_state {
    int seeded; /* the first decision has recorded the current count */
    uint32_t nrecs, nup, ndown;
    sl_hpa_rec_t recs[SL_HPA_RECS];                        /* oldest first */
    sl_hpa_event_t up[SL_HPA_EVENTS], down[SL_HPA_EVENTS]; /* oldest first */
} sl_hpa_state_t;

void sl_hpa_init(sl_hpa_state_t *s);

/* One sync period's observations. */
typedef struct sl_hpa_input {
    uint32_t current;           /* instances running, ready or not */
    const double *ready_values; /* the metric of each ready instance with a sample */
    uint32_t nready;
    uint32_t unready; /* started, not yet passing health checks */
    uint32_t missing; /* ready but without a sample */
} sl_hpa_input_t;

/* The instance count to have now (in [min, max] unless nothing could be computed, then
 * in->current). now_ms is monotonic and never decreases between calls on one state.
 * reason (cap bytes, may be NULL) receives one NUL-terminated line saying why, truncated
 * to fit, e.g. "cpu 90.0 > target 70.0 (ratio 1.29): 3 -> 4". Records the recommendation
 * in s; records no scale event (sl_hpa_applied does). An invalid conf, a non-finite or
 * negative value, or no ready value: in->current, with no recommendation recorded (as K8s
 * when a metric cannot be computed). */
uint32_t sl_hpa_decide(sl_hpa_state_t *s, const sl_hpa_conf_t *c, const sl_hpa_input_t *in,
                       uint64_t now_ms, char *reason, size_t cap);

/* The caller changed the count from `from` to `to` at now_ms (normally as sl_hpa_decide
 * said; it may also refuse, or apply later). The scaling policies count these events.
 * from == to records nothing. */
void sl_hpa_applied(sl_hpa_state_t *s, uint64_t now_ms, uint32_t from, uint32_t to);

#endif
