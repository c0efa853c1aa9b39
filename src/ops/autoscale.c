/* autoscale.c - the backend process supervisor and its HPA loop; see autoscale.h.
 *
 * One instance slot per port of the service's range (inst[i] runs on port_lo + i), so an
 * instance always comes back to its port and to the upstream slot of that address
 * (sl_upstreams_revive): the pool never runs out of slots however often instances come and
 * go. A 200 ms tick drives every state change except process exit (libuv's exit callback):
 * starting -> ready when health checks pass; draining -> stopping (SIGTERM) when its last
 * request ended or drain_timeout passed; stopping -> SIGKILL after stop_grace; missing
 * instances (crashes, scale-up) started, with backoff after crashes; surplus ones drained;
 * and every sync_period one HPA decision. */
#include "autoscale.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/config_diff.h"
#include "../core/log.h"
#include "hpa.h"

#define TICK_MS 200
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define EARLY_EXIT_MS 5000     /* an exit this soon after start is a start failure */
#define CRASH_WINDOW_MS 60000  /* CRASH_LOOP crashes within it: a crash loop */
#define CRASH_LOOP 5
#define STABLE_MS 60000        /* ready this long: the backoff starts over */
#define SETPRIV "/usr/bin/setpriv"

extern char **environ;

enum { I_FREE, I_STARTING, I_READY, I_DRAINING, I_STOPPING };

static const char *inst_state_name(int st)
{
    static const char *names[] = {"free", "starting", "ready", "draining", "stopping"};
    return st >= 0 && st <= I_STOPPING ? names[st] : "?";
}

typedef struct asvc asvc_t;

typedef struct inst {
    asvc_t *owner;
    uint32_t port;
    int state;
    uv_process_t proc;
    int handle_open; /* proc must still be uv_close'd */
    int alive;       /* the process has not exited */
    int pid;
    sl_server_t *server;
    uint64_t started_ms, ready_ms, drain_ms, term_ms;
    /* signals since the last sync */
    uint64_t cpu_ticks, cpu_at_ms;
    int cpu_base;   /* cpu_ticks holds a first reading */
    double cpu_pct; /* of one core, over the last sync period; < 0: not measured yet */
    uint64_t reqs, reqs_at_ms;
    double rps;
    double inflight_sum;
    uint32_t inflight_n;
    double inflight;
} inst_t;

struct asvc {
    sl_autoscale_t *as;
    sl_service_t *svc;
    const sl_autoscale_conf_t *conf;
    inst_t *inst;
    uint32_t ninst;
    uint32_t desired;
    sl_hpa_conf_t hc;
    sl_hpa_state_t hs;
    uint64_t next_sync_ms;
    uint64_t backoff_ms, next_start_ms;
    uint64_t crash_at[CRASH_LOOP];
    unsigned crash_i;
    int crash_loop;
    char reason[200];
    uint64_t decided_unix_ms;
    uint32_t decided_from, decided_to;
    char last_error[200];
    uint64_t starts, crashes, start_failures, ups, downs;
};

struct sl_autoscale {
    uv_loop_t *loop;
    sl_gateway_t *g;
    int nworkers;
    asvc_t *svcs;
    uint32_t nsvcs;
    uv_timer_t tick;
    int stopping;
    int timer_open;
    uint32_t handles; /* process handles not closed yet */
    int have_setpriv;
    double hz;
};

/* utime + stime + cutime + cstime of pid, in clock ticks; 0 and *ok = 0 if unreadable. */
static uint64_t proc_ticks(int pid, int *ok)
{
    char path[64], buf[1024];
    *ok = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p)
        return 0;
    unsigned long long ut, st, cut, cst;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime cutime cstime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &ut, &st,
               &cut, &cst) != 4)
        return 0;
    *ok = 1;
    return ut + st + cut + cst;
}

/* ---- instances ---- */

static void proc_exited(uv_process_t *p, int64_t status, int sig);

static void as_free(sl_autoscale_t *as)
{
    for (uint32_t i = 0; i < as->nsvcs; i++)
        free(as->svcs[i].inst);
    free(as->svcs);
    free(as);
}

static void on_timer_closed(uv_handle_t *h)
{
    as_free(h->data); /* the last handle: every process handle closed before it */
}

/* Stopping and every instance gone: close the tick, which frees the rest. */
static void maybe_finish(sl_autoscale_t *as)
{
    if (as->stopping && as->handles == 0 && as->timer_open) {
        as->timer_open = 0;
        uv_close((uv_handle_t *)&as->tick, on_timer_closed);
    }
}

static void on_proc_closed(uv_handle_t *h)
{
    inst_t *in = h->data;
    sl_autoscale_t *as = in->owner->as;
    in->handle_open = 0;
    as->handles--;
    maybe_finish(as);
}

static void record_crash(asvc_t *s, uint64_t now)
{
    s->crash_at[s->crash_i++ % CRASH_LOOP] = now;
    unsigned recent = 0;
    for (unsigned k = 0; k < CRASH_LOOP; k++)
        recent += s->crash_at[k] && now - s->crash_at[k] < CRASH_WINDOW_MS;
    if (recent >= CRASH_LOOP && !s->crash_loop) {
        s->crash_loop = 1;
        sl_log_error("autoscale %s: crash loop (%u exits within %u s); retrying every %u s",
                     s->svc->conf->name, recent, CRASH_WINDOW_MS / 1000, BACKOFF_MAX_MS / 1000);
    }
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (s->backoff_ms > BACKOFF_MAX_MS)
        s->backoff_ms = BACKOFF_MAX_MS;
    s->next_start_ms = now + s->backoff_ms;
}

/* The command with every {port} replaced, prefixed with exec so the shell becomes it. */
static char *command_line(const char *cmd, uint32_t port)
{
    char ps[16];
    int pl = snprintf(ps, sizeof(ps), "%u", port);
    size_t n = 5, cl = strlen(cmd);
    for (const char *p = cmd; (p = strstr(p, "{port}")) != NULL; p += 6)
        n += (size_t)pl;
    char *out = malloc(n + cl + 1), *o = out;
    if (!out)
        return NULL;
    memcpy(o, "exec ", 5);
    o += 5;
    for (const char *p = cmd; *p;) {
        if (strncmp(p, "{port}", 6) == 0) {
            memcpy(o, ps, (size_t)pl);
            o += pl;
            p += 6;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return out;
}

static int start_instance(asvc_t *s, inst_t *in, uint64_t now)
{
    sl_autoscale_t *as = s->as;
    const sl_autoscale_conf_t *c = s->conf;
    char *cmd = command_line(c->command, in->port);
    size_t nenv = 0;
    while (environ && environ[nenv])
        nenv++;
    char **env = calloc(nenv + c->nenv + 2, sizeof(char *));
    char portvar[32];
    if (!cmd || !env) {
        free(cmd);
        free(env);
        return SL_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        env[k++] = environ[i];
    for (uint32_t i = 0; i < c->nenv; i++)
        env[k++] = c->env[i];
    snprintf(portvar, sizeof(portvar), "PORT=%u", in->port);
    env[k++] = portvar;
    char *argv_setpriv[] = {SETPRIV, "--pdeathsig", "SIGKILL", "--", "/bin/sh", "-c", cmd, NULL};
    char *argv_sh[] = {"/bin/sh", "-c", cmd, NULL};
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t o = {
        .exit_cb = proc_exited,
        .file = as->have_setpriv ? SETPRIV : "/bin/sh",
        .args = as->have_setpriv ? argv_setpriv : argv_sh,
        .env = env,
        .cwd = c->workdir,
        .flags = UV_PROCESS_DETACHED, /* its own session: signals reach its whole group */
        .stdio_count = 3,
        .stdio = stdio,
    };
    in->proc.data = in;
    int rc = uv_spawn(as->loop, &in->proc, &o);
    free(env);
    if (rc != 0) {
        free(cmd);
        snprintf(s->last_error, sizeof(s->last_error), "cannot start \"%s\": %s", c->command,
                 uv_strerror(rc));
        sl_log_error("autoscale %s: %s", s->svc->conf->name, s->last_error);
        s->start_failures++;
        in->handle_open = 1; /* initialised even when the spawn fails: it must be closed */
        as->handles++;
        uv_close((uv_handle_t *)&in->proc, on_proc_closed);
        record_crash(s, now);
        return rc;
    }
    free(cmd);
    in->handle_open = 1;
    as->handles++;
    in->alive = 1;
    in->pid = in->proc.pid;
    in->state = I_STARTING;
    in->started_ms = now;
    in->ready_ms = in->drain_ms = in->term_ms = 0;
    in->cpu_base = 0;
    in->cpu_pct = -1;
    in->inflight_sum = 0;
    in->inflight_n = 0;
    in->inflight = 0;
    in->rps = 0;
    s->starts++;
    /* its server: the slot of its address comes back, or a new one */
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", in->port);
    sl_server_t *sv = sl_upstreams_revive(s->svc, addr);
    if (!sv) {
        sl_server_conf_t sc;
        memset(&sc, 0, sizeof(sc));
        sl_parse_addr(addr, strlen(addr), &sc.addr);
        sc.weight = 1;
        sc.max_fails = 1;
        sc.fail_timeout_ms = 10000;
        if (sl_upstreams_add(&as->g->up, s->svc, 0, &sc, &sv) != 0)
            sv = NULL;
    }
    in->server = sv;
    if (!sv)
        sl_log_warn("autoscale %s: instance on port %u has no pool slot", s->svc->conf->name,
                    in->port);
    sl_log_info("autoscale %s: started instance pid %d on port %u", s->svc->conf->name, in->pid,
                in->port);
    return 0;
}

static void proc_exited(uv_process_t *p, int64_t status, int sig)
{
    inst_t *in = p->data;
    asvc_t *s = in->owner;
    uint64_t now = uv_now(s->as->loop);
    in->alive = 0;
    if (in->state == I_STOPPING || s->as->stopping) {
        sl_log_info("autoscale %s: instance on port %u stopped", s->svc->conf->name, in->port);
    } else {
        s->crashes++;
        int early = now - in->started_ms < EARLY_EXIT_MS && in->state == I_STARTING;
        char how[64];
        if (sig)
            snprintf(how, sizeof(how), "killed by signal %d", sig);
        else
            snprintf(how, sizeof(how), "exited with status %lld", (long long)status);
        snprintf(s->last_error, sizeof(s->last_error), "instance on port %u %s after %.1f s%s",
                 in->port, how, (double)(now - in->started_ms) / 1000.0,
                 status == 127 ? " (command not found)"
                 : early      ? " (does the command start? is the port free?)"
                              : "");
        if (early)
            s->start_failures++;
        sl_log_warn("autoscale %s: %s; replacing it", s->svc->conf->name, s->last_error);
        record_crash(s, now);
        if (in->server && __atomic_load_n(&in->server->state, __ATOMIC_ACQUIRE) != SL_SRV_REMOVED &&
            __atomic_load_n(&in->server->state, __ATOMIC_ACQUIRE) != SL_SRV_DRAINING)
            sl_server_drain(in->server);
    }
    in->state = I_FREE;
    uv_close((uv_handle_t *)&in->proc, on_proc_closed);
}

static void signal_group(inst_t *in, int sig)
{
    if (in->alive && in->pid > 0)
        kill(-in->pid, sig); /* the session leader's group: the shell's children too */
}

static void drain_instance(asvc_t *s, inst_t *in, uint64_t now, const char *why)
{
    in->state = I_DRAINING;
    in->drain_ms = now;
    if (in->server)
        sl_server_drain(in->server);
    sl_log_info("autoscale %s: draining instance on port %u (%s)", s->svc->conf->name, in->port,
                why);
}

/* ---- decisions ---- */

static double metric_of(const asvc_t *s, const inst_t *in, int *ok)
{
    switch (s->conf->metric) {
    case SL_AS_CPU:
        *ok = in->cpu_pct >= 0;
        return in->cpu_pct;
    case SL_AS_INFLIGHT:
        *ok = 1;
        return in->inflight;
    default:
        *ok = in->reqs_at_ms != 0;
        return in->rps;
    }
}

/* Close the sync period of every ready instance: CPU, req/s and mean in-flight over it. */
static void measure(asvc_t *s, uint64_t now)
{
    for (uint32_t i = 0; i < s->ninst; i++) {
        inst_t *in = &s->inst[i];
        if (in->state != I_READY)
            continue;
        int ok;
        uint64_t t = proc_ticks(in->pid, &ok);
        if (ok && in->cpu_base && now > in->cpu_at_ms)
            in->cpu_pct = (double)(t - in->cpu_ticks) / s->as->hz * 100000.0 /
                          (double)(now - in->cpu_at_ms);
        if (ok) {
            in->cpu_ticks = t;
            in->cpu_at_ms = now;
            in->cpu_base = 1;
        }
        uint64_t r = in->server ? __atomic_load_n(&in->server->requests, __ATOMIC_RELAXED) : 0;
        if (in->reqs_at_ms && now > in->reqs_at_ms)
            in->rps = (double)(r - in->reqs) * 1000.0 / (double)(now - in->reqs_at_ms);
        in->reqs = r;
        in->reqs_at_ms = now;
        in->inflight = in->inflight_n ? in->inflight_sum / in->inflight_n : 0;
        in->inflight_sum = 0;
        in->inflight_n = 0;
    }
}

static const char *metric_name(int m)
{
    return m == SL_AS_CPU ? "cpu" : m == SL_AS_INFLIGHT ? "inflight" : "rps";
}

static void decide(asvc_t *s, uint64_t now)
{
    measure(s, now);
    double values[1024];
    uint32_t nready = 0, unready = 0, missing = 0, current = 0;
    for (uint32_t i = 0; i < s->ninst; i++) {
        const inst_t *in = &s->inst[i];
        if (in->state == I_STARTING) {
            unready++;
            current++;
        } else if (in->state == I_READY) {
            current++;
            int ok;
            double v = metric_of(s, in, &ok);
            if (ok && nready < 1024)
                values[nready++] = v;
            else
                missing++;
        }
    }
    sl_hpa_input_t input = {.current = current,
                            .ready_values = values,
                            .nready = nready,
                            .unready = unready,
                            .missing = missing};
    char why[200];
    uint32_t want = sl_hpa_decide(&s->hs, &s->hc, &input, now, why, sizeof(why));
    if (want == s->desired)
        return;
    sl_log_info("autoscale %s: %s", s->svc->conf->name, why); /* ends "from -> to" */
    snprintf(s->reason, sizeof(s->reason), "%s", why);
    s->decided_from = s->desired;
    s->decided_to = want;
    s->decided_unix_ms = sl_unix_ms();
    if (want > s->desired)
        s->ups++;
    else
        s->downs++;
    sl_hpa_applied(&s->hs, now, s->desired, want);
    s->desired = want;
}

/* ---- the tick ---- */

static void service_tick(asvc_t *s, uint64_t now)
{
    uint32_t active = 0;
    for (uint32_t i = 0; i < s->ninst; i++) {
        inst_t *in = &s->inst[i];
        uint32_t st = in->server ? __atomic_load_n(&in->server->state, __ATOMIC_ACQUIRE) : SL_SRV_UP;
        switch (in->state) {
        case I_STARTING:
            if (in->server && st == SL_SRV_UP) {
                in->state = I_READY;
                in->ready_ms = now;
                sl_log_info("autoscale %s: instance on port %u ready after %.1f s",
                            s->svc->conf->name, in->port, (double)(now - in->started_ms) / 1000.0);
            }
            break;
        case I_READY:
            if (in->server) {
                in->inflight_sum += (double)__atomic_load_n(&in->server->inflight,
                                                            __ATOMIC_RELAXED);
                in->inflight_n++;
            }
            if (in->ready_ms && now - in->ready_ms > STABLE_MS && s->backoff_ms) {
                s->backoff_ms = 0; /* stable again: the next crash waits 1 s */
                s->crash_loop = 0;
            }
            break;
        case I_DRAINING:
            if (!in->server || st == SL_SRV_REMOVED || now - in->drain_ms >= s->conf->drain_timeout_ms) {
                in->state = I_STOPPING;
                in->term_ms = now;
                signal_group(in, SIGTERM);
            }
            break;
        case I_STOPPING:
            if (in->alive && now - in->term_ms >= s->conf->stop_grace_ms) {
                sl_log_warn("autoscale %s: instance on port %u did not stop within %llu ms: "
                            "SIGKILL",
                            s->svc->conf->name, in->port,
                            (unsigned long long)s->conf->stop_grace_ms);
                signal_group(in, SIGKILL);
                in->term_ms = now; /* once more after another grace, should it linger */
            }
            break;
        }
        if (in->state == I_STARTING || in->state == I_READY)
            active++;
    }
    if (s->as->stopping)
        return;
    if (now >= s->next_sync_ms) {
        s->next_sync_ms = now + s->conf->sync_period_ms;
        decide(s, now);
    }
    /* too many: drain the one that matters least (not ready first, then the newest) */
    while (active > s->desired) {
        inst_t *pick = NULL;
        for (uint32_t i = 0; i < s->ninst; i++) {
            inst_t *in = &s->inst[i];
            if (in->state != I_STARTING && in->state != I_READY)
                continue;
            if (!pick || (in->state == I_STARTING && pick->state == I_READY) ||
                (in->state == pick->state && in->started_ms >= pick->started_ms))
                pick = in;
        }
        if (!pick)
            break;
        drain_instance(s, pick, now, "scale down");
        active--;
    }
    /* too few: start on the lowest free port whose slot is not still draining */
    while (active < s->desired && now >= s->next_start_ms) {
        inst_t *slot = NULL;
        for (uint32_t i = 0; i < s->ninst && !slot; i++) {
            inst_t *in = &s->inst[i];
            if (in->state != I_FREE || in->handle_open)
                continue;
            if (in->server &&
                __atomic_load_n(&in->server->state, __ATOMIC_ACQUIRE) == SL_SRV_DRAINING)
                continue;
            slot = in;
        }
        if (!slot || start_instance(s, slot, now) != 0)
            break;
        active++;
    }
}

static void on_tick(uv_timer_t *t)
{
    sl_autoscale_t *as = t->data;
    uint64_t now = uv_now(as->loop);
    for (uint32_t i = 0; i < as->nsvcs; i++)
        service_tick(&as->svcs[i], now);
}

/* ---- life cycle ---- */

static void hpa_conf_of(sl_hpa_conf_t *h, const sl_autoscale_conf_t *c)
{
    sl_hpa_conf_defaults(h);
    h->min = c->min;
    h->max = c->max;
    h->target = c->target;
    h->tolerance = c->tolerance_pct / 100.0;
    h->metric = metric_name(c->metric);
    h->utilization = c->metric == SL_AS_CPU; /* a missing CPU sample counts as 100% down */
    const sl_as_behavior_conf_t *bc[2] = {&c->up, &c->down};
    sl_hpa_behavior_t *bh[2] = {&h->up, &h->down};
    for (int d = 0; d < 2; d++) {
        if (bc[d]->window_ms != SL_ALERT_UNSET)
            bh[d]->window_ms = bc[d]->window_ms;
        if (bc[d]->policies) {
            bh[d]->npolicies = 0;
            for (uint32_t k = 0; k < bc[d]->npolicies && k < SL_AS_MAX_POLICIES; k++) {
                sl_hpa_policy_t *p = &bh[d]->policies[bh[d]->npolicies++];
                p->type = bc[d]->policies[k].type == SL_AS_PODS ? SL_HPA_PODS : SL_HPA_PERCENT;
                p->value = bc[d]->policies[k].value;
                p->period_ms = bc[d]->policies[k].period_ms;
            }
        }
        bh[d]->select = bc[d]->select == SL_AS_SELECT_MIN        ? SL_HPA_SELECT_MIN
                        : bc[d]->select == SL_AS_SELECT_DISABLED ? SL_HPA_SELECT_DISABLED
                                                                 : SL_HPA_SELECT_MAX;
    }
}

sl_autoscale_t *sl_autoscale_start(uv_loop_t *loop, sl_gateway_t *g, int nworkers, int *err)
{
    *err = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->up.nservices; i++)
        n += g->up.services[i].conf->autoscale.enabled ? 1 : 0;
    if (!n)
        return NULL;
    sl_autoscale_t *as = calloc(1, sizeof(*as));
    if (!as || !(as->svcs = calloc(n, sizeof(asvc_t)))) {
        free(as);
        *err = SL_ENOMEM;
        return NULL;
    }
    as->loop = loop;
    as->g = g;
    as->nworkers = nworkers;
    as->have_setpriv = access(SETPRIV, X_OK) == 0;
    as->hz = (double)sysconf(_SC_CLK_TCK);
    if (as->hz <= 0)
        as->hz = 100;
    if (!as->have_setpriv)
        sl_log_warn("autoscale: %s is missing: instances will not die with sluice if it is "
                    "killed (install util-linux)",
                    SETPRIV);
    uint64_t now = uv_now(loop);
    for (uint32_t i = 0; i < g->up.nservices; i++) {
        sl_service_t *svc = &g->up.services[i];
        const sl_autoscale_conf_t *c = &svc->conf->autoscale;
        if (!c->enabled)
            continue;
        asvc_t *s = &as->svcs[as->nsvcs++];
        s->as = as;
        s->svc = svc;
        s->conf = c;
        s->ninst = c->port_hi - c->port_lo + 1;
        s->inst = calloc(s->ninst, sizeof(inst_t));
        if (!s->inst) {
            *err = SL_ENOMEM;
            as_free(as); /* no handle exists yet */
            return NULL;
        }
        for (uint32_t k = 0; k < s->ninst; k++) {
            s->inst[k].owner = s;
            s->inst[k].port = c->port_lo + k;
        }
        s->desired = c->initial;
        hpa_conf_of(&s->hc, c);
        sl_hpa_init(&s->hs);
        s->next_sync_ms = now + c->sync_period_ms;
        snprintf(s->reason, sizeof(s->reason), "initial");
        sl_log_info("autoscale %s: %u instances (min %u, max %u), target %s %g, ports %u-%u",
                    svc->conf->name, c->initial, c->min, c->max, metric_name(c->metric),
                    c->target, c->port_lo, c->port_hi);
    }
    uv_timer_init(loop, &as->tick);
    as->tick.data = as;
    as->timer_open = 1;
    uv_timer_start(&as->tick, on_tick, 0, TICK_MS);
    return as;
}

void sl_autoscale_stop(sl_autoscale_t *as)
{
    if (!as || as->stopping)
        return;
    as->stopping = 1;
    uint64_t now = uv_now(as->loop);
    for (uint32_t i = 0; i < as->nsvcs; i++) {
        asvc_t *s = &as->svcs[i];
        for (uint32_t k = 0; s->inst && k < s->ninst; k++) {
            inst_t *in = &s->inst[k];
            if (in->alive) {
                in->state = I_STOPPING;
                in->term_ms = now;
                signal_group(in, SIGTERM);
            }
        }
    }
    /* Until every instance is gone the tick goes on (SIGKILL after stop_grace); the last
     * process handle closed closes the tick, and its close frees everything. */
    maybe_finish(as);
}

/* ---- visibility ---- */

json_t *sl_autoscale_json(const sl_autoscale_t *as, const sl_service_t *svc)
{
    const asvc_t *s = NULL;
    for (uint32_t i = 0; as && i < as->nsvcs && !s; i++)
        if (as->svcs[i].svc == svc)
            s = &as->svcs[i];
    if (!s)
        return NULL;
    uint64_t now = uv_now(as->loop);
    json_t *arr = json_array();
    uint32_t current = 0, ready = 0;
    for (uint32_t k = 0; arr && k < s->ninst; k++) {
        const inst_t *in = &s->inst[k];
        if (in->state == I_FREE)
            continue;
        current += in->state == I_STARTING || in->state == I_READY;
        ready += in->state == I_READY;
        json_t *j = json_pack("{s:i,s:i,s:s,s:f,s:o,s:f,s:f}", "port", (int)in->port, "pid",
                              in->pid, "state", inst_state_name(in->state), "age_s",
                              (double)(now - in->started_ms) / 1000.0, "cpu_percent",
                              in->cpu_pct >= 0 ? json_real(in->cpu_pct) : json_null(),
                              "in_flight", in->inflight, "rps", in->rps);
        json_array_append_new(arr, j);
    }
    char at[40] = "";
    if (s->decided_unix_ms) {
        time_t t = (time_t)(s->decided_unix_ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    return json_pack("{s:i,s:i,s:i,s:i,s:i,s:s,s:f,s:s,s:{s:s,s:i,s:i,s:s},s:b,s:s,s:I,s:I,s:I,s:o}",
                     "min", (int)s->conf->min, "max", (int)s->conf->max, "desired",
                     (int)s->desired, "current", (int)current, "ready", (int)ready, "metric",
                     metric_name(s->conf->metric), "target", s->conf->target, "command",
                     s->conf->command, "last_decision", "at", at, "from", (int)s->decided_from,
                     "to", (int)s->decided_to, "reason", s->reason, "crash_loop", s->crash_loop,
                     "last_error", s->last_error, "starts", (json_int_t)s->starts, "crashes",
                     (json_int_t)s->crashes, "start_failures", (json_int_t)s->start_failures,
                     "instances", arr ? arr : json_array());
}

void sl_autoscale_collect(sl_textbuf_t *t, void *arg)
{
    const sl_autoscale_t *as = arg;
    if (!as)
        return;
    static const char *gauges[][2] = {
        {"autoscale_desired_instances", "Instances the autoscaler wants."},
        {"autoscale_current_instances", "Instances running and not draining (ready or not)."},
        {"autoscale_ready_instances", "Instances taking traffic (health checks passed)."},
        {"autoscale_crash_loop", "1 while the service's instances keep exiting."}};
    for (int gi = 0; gi < 4; gi++) {
        sl_text_printf(t, "# HELP %s %s\n# TYPE %s gauge\n", gauges[gi][0], gauges[gi][1],
                       gauges[gi][0]);
        for (uint32_t i = 0; i < as->nsvcs; i++) {
            const asvc_t *s = &as->svcs[i];
            uint32_t cur = 0, ready = 0;
            for (uint32_t k = 0; k < s->ninst; k++) {
                cur += s->inst[k].state == I_STARTING || s->inst[k].state == I_READY;
                ready += s->inst[k].state == I_READY;
            }
            uint32_t v = gi == 0 ? s->desired : gi == 1 ? cur : gi == 2 ? ready : (uint32_t)s->crash_loop;
            sl_text_printf(t, "%s{service=\"%s\"} %u\n", gauges[gi][0], s->svc->conf->name, v);
        }
    }
    sl_text_printf(t, "# HELP autoscale_instance_cpu_ratio CPU of a ready instance over the last "
                      "sync period, in cores.\n# TYPE autoscale_instance_cpu_ratio gauge\n");
    for (uint32_t i = 0; i < as->nsvcs; i++) {
        const asvc_t *s = &as->svcs[i];
        for (uint32_t k = 0; k < s->ninst; k++)
            if (s->inst[k].state == I_READY && s->inst[k].cpu_pct >= 0)
                sl_text_printf(t, "autoscale_instance_cpu_ratio{service=\"%s\",port=\"%u\"} %.3f\n",
                               s->svc->conf->name, s->inst[k].port, s->inst[k].cpu_pct / 100.0);
    }
    sl_text_printf(t, "# HELP autoscale_decisions_total Scaling decisions, by direction.\n"
                      "# TYPE autoscale_decisions_total counter\n");
    for (uint32_t i = 0; i < as->nsvcs; i++)
        sl_text_printf(t,
                       "autoscale_decisions_total{service=\"%s\",direction=\"up\"} %llu\n"
                       "autoscale_decisions_total{service=\"%s\",direction=\"down\"} %llu\n",
                       as->svcs[i].svc->conf->name, (unsigned long long)as->svcs[i].ups,
                       as->svcs[i].svc->conf->name, (unsigned long long)as->svcs[i].downs);
    static const char *counters[][2] = {
        {"autoscale_instance_starts_total", "Instances started."},
        {"autoscale_instance_exits_total", "Instances that exited without being asked to."},
        {"autoscale_start_failures_total",
         "Instances that could not start or exited within 5 s of starting."}};
    for (int ci = 0; ci < 3; ci++) {
        sl_text_printf(t, "# HELP %s %s\n# TYPE %s counter\n", counters[ci][0], counters[ci][1],
                       counters[ci][0]);
        for (uint32_t i = 0; i < as->nsvcs; i++) {
            const asvc_t *s = &as->svcs[i];
            uint64_t v = ci == 0 ? s->starts : ci == 1 ? s->crashes : s->start_failures;
            sl_text_printf(t, "%s{service=\"%s\"} %llu\n", counters[ci][0], s->svc->conf->name,
                           (unsigned long long)v);
        }
    }
}

/* ---- reload ---- */

static const sl_service_t *find_service(const sl_gateway_t *g, const char *name)
{
    for (uint32_t i = 0; i < g->up.nservices; i++)
        if (strcmp(g->up.services[i].conf->name, name) == 0)
            return &g->up.services[i];
    return NULL;
}

int sl_autoscale_can_rebind(const sl_autoscale_t *as, const sl_gateway_t *g)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->up.nservices; i++)
        n += g->up.services[i].conf->autoscale.enabled ? 1 : 0;
    if (!as || as->stopping || n != as->nsvcs)
        return 0;
    for (uint32_t i = 0; i < as->nsvcs; i++) {
        const sl_service_t *svc = find_service(g, as->svcs[i].svc->conf->name);
        if (!svc || !sl_config_service_equal(svc->conf, as->svcs[i].svc->conf))
            return 0;
    }
    return 1;
}

/* The server of svc at addr in either pool, whatever its state (an instance's slot). */
static sl_server_t *slot_of_addr(sl_service_t *svc, const char *addr)
{
    sl_pool_t *pools[2] = {&svc->primary, &svc->read};
    for (int p = 0; p < 2; p++)
        for (uint32_t k = 0; pools[p]->slots && k < pools[p]->n; k++)
            if (strcmp(pools[p]->slots[k].conf.addr.text, addr) == 0)
                return &pools[p]->slots[k];
    return NULL;
}

void sl_autoscale_rebind(sl_autoscale_t *as, sl_gateway_t *g, int nworkers)
{
    as->g = g;
    as->nworkers = nworkers;
    for (uint32_t i = 0; i < as->nsvcs; i++) {
        asvc_t *s = &as->svcs[i];
        sl_service_t *svc = (sl_service_t *)find_service(g, s->svc->conf->name);
        s->svc = svc; /* sl_autoscale_can_rebind said it is there */
        s->conf = &svc->conf->autoscale;
        hpa_conf_of(&s->hc, s->conf); /* the same values; the decisions' state stays */
        for (uint32_t k = 0; k < s->ninst; k++) {
            inst_t *in = &s->inst[k];
            if (!in->server)
                continue;
            /* sl_upstreams_carry brought the instance's server over with its state; a
             * REMOVED one was not, and a start finds or adds its slot again. */
            char addr[64];
            snprintf(addr, sizeof(addr), "127.0.0.1:%u", in->port);
            in->server = slot_of_addr(svc, addr);
        }
    }
}
