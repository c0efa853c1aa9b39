#!/usr/bin/env bash
# deploy/validate.sh - check deploy/ (Kubernetes manifests, systemd unit) and the
# Dockerfile with whatever tools this machine has. Every check prints PASS, FAIL or SKIP
# (a tool that is not installed is skipped with a message, never counted as a pass); the
# script exits 1 when any check failed, 0 otherwise. docs/deploy.md lists the results.
#
#   deploy/validate.sh      # from anywhere; SLUICE=path/to/sluice to check another binary
#
# Tools, each optional (docs/deploy.md says where they come from):
#   build/sluice    `make build/sluice`: `sluice -t -c` on the ConfigMap's sluice.yaml
#                   and on the image's default configuration
#   python3 + yaml  Debian python3-yaml: reads the ConfigMap and the Dockerfile
#   yamllint        Debian yamllint: YAML syntax and style
#   kubectl         `kubectl kustomize`: renders deploy/k8s as `kubectl apply -k` would
#   node + npm packages (npm install -g kubernetes-models yaml typescript@5 dockerfile-utils):
#                   kubernetes-models: the Kubernetes JSON schemas compiled for ajv;
#                   typescript: the same API types, strictly (unknown fields are errors);
#                   dockerfile-utils: Dockerfile syntax
#   systemd-analyze verify, and security --offline (systemd >= 250)
#   ShellCheck      this script and the image's HEALTHCHECK command
#   unshare, curl, redis-server, build/demo-origin: run sluice with the ConfigMap's and
#                   the image's configuration, and follow a churning headless Service, in
#                   private network namespaces (their own loopback only: nothing leaves)
#   buildah         build the image without a daemon, run sluice -t, the HEALTHCHECK and
#                   a SIGTERM in it (only if the base image is in local storage)
set -u
cd "$(dirname "$0")/.." || exit 1
K8S=deploy/k8s
UNIT=deploy/systemd/sluice.service
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

npass=0 nfail=0 nskip=0
pass() { echo "PASS  $*"; npass=$((npass + 1)); }
fail() { echo "FAIL  $*"; nfail=$((nfail + 1)); }
skip() { echo "SKIP  $*"; nskip=$((nskip + 1)); }
have() { command -v "$1" >/dev/null 2>&1; }
# check NAME CMD...: run CMD; PASS, or FAIL with its output indented.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$name"
        [ -n "${VERBOSE:-}" ] && [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/      /'
    else
        fail "$name"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
    return 0
}

MANIFESTS=()
for f in "$K8S"/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || MANIFESTS+=("$f")
done

# ---- the sluice binary ------------------------------------------------------------
SLUICE=${SLUICE:-build/sluice}
if [ ! -x "$SLUICE" ] && [ "$SLUICE" = build/sluice ]; then
    if have make && have cc; then
        check "make build/sluice" make -s build/sluice
    else
        skip "sluice binary: build/sluice is missing and make/cc are not installed"
    fi
fi
[ -x "$SLUICE" ] || SLUICE=

PY=
for p in /usr/bin/python3 python3; do
    if have "$p" && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done

# ---- 1. YAML syntax --------------------------------------------------------------
cat >"$TMP/yamllint.yaml" <<'EOF'
extends: default
rules:
  document-start: disable
  line-length: { max: 120 }
  braces: { max-spaces-inside: 1 }
  brackets: { max-spaces-inside: 1 }
  comments: { min-spaces-from-content: 1 }
  comments-indentation: disable
  truthy: { check-keys: false }
EOF
if have yamllint; then
    check "yamllint $K8S/*.yaml" yamllint -s -c "$TMP/yamllint.yaml" "$K8S"
else
    skip "yamllint: not installed (apt-get install yamllint)"
fi

# ---- 2. the ConfigMap's sluice.yaml, by sluice itself ------------------------------
CONF="$TMP/configmap-sluice.yaml"
if [ -n "$PY" ]; then
    "$PY" - "$K8S/configmap.yaml" "$CONF" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = [d for d in docs if d.get("kind") == "ConfigMap" and "sluice.yaml" in d.get("data", {})]
if len(cm) != 1:
    sys.exit("configmap.yaml: expected one ConfigMap with data.sluice.yaml")
open(sys.argv[2], "w").write(cm[0]["data"]["sluice.yaml"])
EOF
fi
if [ -z "$PY" ]; then
    skip "sluice.yaml from $K8S/configmap.yaml: needs python3 with yaml (apt-get install python3-yaml)"
elif [ ! -s "$CONF" ]; then
    fail "extract sluice.yaml from $K8S/configmap.yaml"
elif have yamllint; then
    check "yamllint sluice.yaml (ConfigMap data)" yamllint -s -c "$TMP/yamllint.yaml" "$CONF"
fi
# sluice -t on the extracted file, its FILE:LINE:COL turned back into configmap.yaml's.
check_conf() {
    local at out rc
    at=$(grep -n '^  sluice.yaml: |' "$K8S/configmap.yaml" | cut -d: -f1)
    out=$("$SLUICE" -t -c "$CONF" 2>&1)
    rc=$?
    printf '%s\n' "$out" | awk -v f="$CONF" -v to="$K8S/configmap.yaml" -v at="${at:-0}" '
        index($0, f ":") == 1 { split(substr($0, length(f) + 2), p, ":")
            if (p[1] ~ /^[0-9]+$/ && p[2] ~ /^[0-9]+$/) {
                rest = substr($0, length(f) + length(p[1]) + length(p[2]) + 4)
                print to ":" p[1] + at ":" p[2] + 4 ":" rest; next } }
        { print }'
    return $rc
}
CONF_OK=
if [ -s "$CONF" ] && [ -n "$SLUICE" ]; then
    before=$nfail
    check "$SLUICE -t -c sluice.yaml (ConfigMap data)" check_conf
    [ "$nfail" = "$before" ] && CONF_OK=1
fi

# The image's default configuration: the printf lines of the Dockerfile.
IMGCONF="$TMP/image.yaml"
if [ -n "$PY" ]; then
    "$PY" - Dockerfile "$IMGCONF" <<'EOF'
import re, shlex, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
m = re.search(r"RUN printf '%s\\n' (.*?) > /src/sluice.yaml", text)
if not m:
    sys.exit("Dockerfile: no `RUN printf '%s\\n' ... > /src/sluice.yaml` step")
open(sys.argv[2], "w").write("".join(s + "\n" for s in shlex.split(m.group(1))))
EOF
    if [ -s "$IMGCONF" ] && [ -n "$SLUICE" ]; then
        check "$SLUICE -t -c (the Dockerfile's default configuration)" "$SLUICE" -t -c "$IMGCONF"
    fi
fi

# ---- 3. kustomize -----------------------------------------------------------------
RENDERED=
if have kubectl; then
    if kubectl kustomize "$K8S" >"$TMP/rendered.yaml" 2>"$TMP/kustomize.err"; then
        RENDERED="$TMP/rendered.yaml"
        pass "kubectl kustomize $K8S ($(grep -c '^kind:' "$RENDERED") objects)"
    else
        fail "kubectl kustomize $K8S"
        sed 's/^/      /' "$TMP/kustomize.err"
    fi
else
    skip "kubectl kustomize: kubectl not installed (Debian: kubernetes-client)"
fi

# ---- 4-6. schemas, strict types, cross-references ---------------------------------
NODE_ROOT=${NODE_MODULES:-}
if [ -z "$NODE_ROOT" ] && have npm; then NODE_ROOT=$(npm root -g 2>/dev/null); fi
if ! have node; then
    skip "Kubernetes schemas: node not installed (apt-get install nodejs npm)"
elif [ ! -d "$NODE_ROOT/kubernetes-models" ] || [ ! -d "$NODE_ROOT/yaml" ]; then
    skip "Kubernetes schemas: npm packages kubernetes-models and yaml not installed" \
        "(npm install -g kubernetes-models yaml typescript@5)"
else
    TSC=
    [ -f "$NODE_ROOT/typescript/bin/tsc" ] && TSC="$NODE_ROOT/typescript/bin/tsc"
    DOCKER_UID=$(sed -n 's/^USER \([0-9]*\).*/\1/p' Dockerfile | tail -1)
    cat >"$TMP/check.mjs" <<'EOF'
// Validates every document of the given files: the Kubernetes JSON schema (ajv, from
// kubernetes-models), then the TypeScript types of the same API with excess-property
// checks (a misspelt field is an error, as kubeconform -strict), then references
// between the objects and the ConfigMap's sluice.yaml. Prints one line per problem.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { execFileSync } from "node:child_process";

const [root, tmp, tsc, dockerUid, renderedPath, ...files] = process.argv.slice(2);
const YAML = (await import(pathToFileURL(path.join(root, "yaml/dist/index.js")))).default;
const problems = { schema: [], strict: [], refs: [] };
const docs = [];
for (const file of files) {
    const text = fs.readFileSync(file, "utf8");
    YAML.parseAllDocuments(text).forEach((d, i) => {
        if (d.errors.length) { problems.schema.push(`${file}#${i}: ${d.errors[0].message}`); return; }
        const obj = d.toJS();
        if (obj) docs.push({ file, i, obj, label: `${file}#${i} ${obj.kind}/${obj.metadata?.name}` });
    });
}
let rendered = [];
if (renderedPath !== "-") {
    rendered = YAML.parseAllDocuments(fs.readFileSync(renderedPath, "utf8")).map((d) => d.toJS()).filter(Boolean);
}

// 4. JSON schema (ajv)
const modPath = (o) => path.join(root, "kubernetes-models", o.apiVersion ?? "?", `${o.kind}.js`);
for (const d of docs) {
    const f = modPath(d.obj);
    if (!fs.existsSync(f)) { problems.schema.push(`${d.label}: no schema for ${d.obj.apiVersion} ${d.obj.kind}`); continue; }
    const mod = await import(pathToFileURL(f));
    try { new mod[d.obj.kind](d.obj).validate(); }
    catch (e) { problems.schema.push(`${d.label}: ${e.message}`); }
}

// 5. strict types (TypeScript)
if (tsc !== "-") {
    fs.mkdirSync(path.join(tmp, "ts"), { recursive: true });
    try { fs.symlinkSync(root, path.join(tmp, "ts", "node_modules")); } catch {}
    const lines = [], spans = [];
    for (const d of docs) {
        const spec = `kubernetes-models/${d.obj.apiVersion}/${d.obj.kind}`;
        if (!fs.existsSync(modPath(d.obj))) continue;
        const start = lines.length + 1;
        const body = JSON.stringify(d.obj, null, 1).split("\n");
        lines.push(`export const d${spans.length}: import("${spec}").I${d.obj.kind} = ${body.shift()}`, ...body);
        lines[lines.length - 1] += ";";
        spans.push({ start, end: lines.length, label: d.label });
    }
    fs.writeFileSync(path.join(tmp, "ts", "check.ts"), lines.join("\n") + "\n");
    fs.writeFileSync(path.join(tmp, "ts", "tsconfig.json"), JSON.stringify({
        compilerOptions: { strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext",
                           target: "es2022", skipLibCheck: true, types: [] },
        files: ["check.ts"] }));
    let out = "";
    try { execFileSync(process.execPath, [tsc, "-p", path.join(tmp, "ts")], { encoding: "utf8" }); }
    catch (e) { out = (e.stdout || "") + (e.stderr || ""); if (!out) out = String(e); }
    for (const l of out.split("\n").filter((l) => l.trim())) {
        const m = /check\.ts\((\d+),\d+\): (.*)/.exec(l);
        const s = m && spans.find((s) => +m[1] >= s.start && +m[1] <= s.end);
        problems.strict.push(s ? `${s.label}: ${m[2]}` : l);
    }
}

// 6. references
const ref = (msg) => problems.refs.push(msg);
const all = docs.map((d) => d.obj);
const byKind = (k) => all.filter((o) => o.kind === k);
const find = (k, n) => all.find((o) => o.kind === k && o.metadata?.name === n);
const matches = (sel, labels) => sel && Object.keys(sel).length > 0 &&
    Object.entries(sel).every(([k, v]) => labels?.[k] === v);
const podsOf = (sel) => byKind("Deployment").filter((dp) => matches(sel, dp.spec.template.metadata?.labels));
const portOf = (dp, p) => typeof p === "number" ? p :
    dp.spec.template.spec.containers.flatMap((c) => c.ports ?? []).find((q) => q.name === p)?.containerPort;
const duration = (s) => { const m = /^(\d+)(ms|s|m|h|d)?$/.exec(String(s)); if (!m) return NaN;
    return +m[1] * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] ?? "s"]; };
const addrPort = (a) => +String(a).split(":").pop();

for (const dp of byKind("Deployment")) {
    const n = `Deployment/${dp.metadata.name}`, ps = dp.spec.template.spec;
    if (!matches(dp.spec.selector?.matchLabels, dp.spec.template.metadata?.labels))
        ref(`${n}: selector does not match the pod template's labels`);
    for (const c of ps.containers) {
        for (const pr of ["readinessProbe", "livenessProbe"]) {
            const p = c[pr]?.httpGet?.port ?? c[pr]?.tcpSocket?.port;
            if (p !== undefined && portOf(dp, p) === undefined) ref(`${n}: ${pr} port ${p} is not a container port`);
        }
        if (!c[`readinessProbe`]) ref(`${n}: container ${c.name} has no readinessProbe`);
        if (!c.securityContext?.readOnlyRootFilesystem || c.securityContext?.allowPrivilegeEscalation !== false)
            ref(`${n}: container ${c.name}: want readOnlyRootFilesystem and allowPrivilegeEscalation: false`);
        for (const e of c.env ?? []) {
            const k = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
            if (!k) continue;
            const kind = e.valueFrom.secretKeyRef ? "Secret" : "ConfigMap", o = find(kind, k.name);
            if (!o) ref(`${n}: env ${e.name}: ${kind} ${k.name} is not defined in ${"deploy/k8s"}`);
            else if (!(k.key in { ...o.data, ...o.stringData })) ref(`${n}: env ${e.name}: ${kind} ${k.name} has no key ${k.key}`);
        }
    }
    if (ps.securityContext?.runAsNonRoot !== true) ref(`${n}: want runAsNonRoot: true`);
    for (const v of ps.volumes ?? [])
        if (v.configMap && !find("ConfigMap", v.configMap.name)) ref(`${n}: volume ${v.name}: ConfigMap ${v.configMap.name} is not defined`);
}
for (const s of byKind("Service")) {
    if (!s.spec.selector) continue;
    const dps = podsOf(s.spec.selector);
    if (dps.length !== 1) { ref(`Service/${s.metadata.name}: selector matches ${dps.length} Deployments`); continue; }
    for (const p of s.spec.ports)
        if (portOf(dps[0], p.targetPort ?? p.port) === undefined)
            ref(`Service/${s.metadata.name}: targetPort ${p.targetPort} is not a port of Deployment/${dps[0].metadata.name}`);
}
for (const h of byKind("HorizontalPodAutoscaler")) {
    const n = `HorizontalPodAutoscaler/${h.metadata.name}`, t = h.spec.scaleTargetRef;
    const dp = t.kind === "Deployment" && find("Deployment", t.name);
    if (!dp) { ref(`${n}: scaleTargetRef ${t.kind}/${t.name} is not defined`); continue; }
    if (!(h.spec.minReplicas <= h.spec.maxReplicas)) ref(`${n}: minReplicas > maxReplicas`);
    if (h.spec.metrics?.some((m) => m.resource?.name === "cpu"))
        for (const c of dp.spec.template.spec.containers)
            if (!c.resources?.requests?.cpu) ref(`${n}: container ${c.name} of ${t.name} has no CPU request (Utilization needs one)`);
    if (!(h.spec.behavior?.scaleDown?.stabilizationWindowSeconds >= 300)) ref(`${n}: want scaleDown stabilizationWindowSeconds >= 300`);
}
for (const p of byKind("PodDisruptionBudget"))
    if (podsOf(p.spec.selector?.matchLabels).length !== 1) ref(`PodDisruptionBudget/${p.metadata.name}: selector matches no single Deployment`);
for (const np of byKind("NetworkPolicy")) {
    if (podsOf(np.spec.podSelector?.matchLabels).length !== 1) ref(`NetworkPolicy/${np.metadata.name}: podSelector matches no single Deployment`);
    for (const r of np.spec.ingress ?? []) for (const f of r.from ?? [])
        if (f.podSelector && podsOf(f.podSelector.matchLabels).length !== 1) ref(`NetworkPolicy/${np.metadata.name}: a from podSelector matches no Deployment`);
}

// sluice's Deployment against its configuration, the Redis Service, the backend's
// headless Service and the Dockerfile's user.
const cm = byKind("ConfigMap").find((c) => c.data?.["sluice.yaml"]);
const sl = cm && podsOf({ "app.kubernetes.io/name": "sluice" })[0];
if (!cm || !sl) ref("no ConfigMap with sluice.yaml, or no Deployment labelled app.kubernetes.io/name: sluice");
else {
    const conf = YAML.parse(cm.data["sluice.yaml"]);
    const c = sl.spec.template.spec.containers.find((x) => x.name === "sluice");
    const ns = rendered.find((o) => o.kind === "Deployment" && o.metadata.name === sl.metadata.name)?.metadata.namespace;
    const port = (name) => c.ports?.find((p) => p.name === name)?.containerPort;
    const listen = [conf.listen].flat().map((l) => addrPort(l.address ?? l));
    if (!listen.includes(port("http"))) ref(`sluice: container port http (${port("http")}) is not a listen port (${listen})`);
    if (addrPort(conf.admin?.listen ?? "127.0.0.1:9901") !== port("admin")) ref(`sluice: container port admin is not admin.listen`);
    if (String(conf.admin?.listen ?? "127.0.0.1").startsWith("127.")) ref("sluice: admin.listen on loopback: the kubelet's probes cannot reach it");
    if (String(sl.spec.template.metadata.annotations?.["prometheus.io/port"]) !== String(port("admin")))
        ref("sluice: prometheus.io/port annotation is not the admin port");
    const envs = new Set((c.env ?? []).map((e) => e.name));
    for (const v of [conf.admin?.token_env, conf.auth?.jwt?.secret_env])
        if (v && !envs.has(v)) ref(`sluice: the configuration reads $${v} but the container does not set it`);
    const grace = sl.spec.template.spec.terminationGracePeriodSeconds ?? 30;
    const sleep = +(c.lifecycle?.preStop?.exec?.command?.find((a) => /^\d+$/.test(a)) ?? c.lifecycle?.preStop?.sleep?.seconds ?? 0);
    const st = duration(conf.limits?.shutdown_timeout ?? "30s");
    if (!(grace >= sleep + st + 5))
        ref(`sluice: terminationGracePeriodSeconds ${grace} < preStop ${sleep}s + shutdown_timeout ${st}s + 5s`);
    const cpu = String(c.resources?.limits?.cpu ?? "");
    if (conf.workers !== "auto" && conf.workers !== undefined && /^\d+$/.test(cpu) && +cpu !== +conf.workers)
        ref(`sluice: workers ${conf.workers} differs from the CPU limit ${cpu}`);
    if (dockerUid && String(sl.spec.template.spec.securityContext?.runAsUser) !== dockerUid)
        ref(`sluice: runAsUser ${sl.spec.template.spec.securityContext?.runAsUser} is not the Dockerfile's USER ${dockerUid}`);
    if (conf.redis) {
        const [ip, rport] = String(conf.redis.address).split(":");
        const svc = byKind("Service").find((s) => s.spec.clusterIP === ip);
        if (!svc) ref(`sluice: redis.address ${conf.redis.address}: no Service has clusterIP ${ip}`);
        else if (!svc.spec.ports.some((p) => p.port === +rport)) ref(`sluice: Service/${svc.metadata.name} has no port ${rport}`);
    }
    for (const [name, s] of Object.entries(conf.services ?? {}))
        for (const srv of [...(s.servers ?? []), ...(s.read_servers ?? [])]) {
            const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.[a-z0-9.-]+)?:(\d+)$/.exec(String(srv.address));
            if (!m) continue;
            const hs = find("Service", m[1]);
            if (!hs) { ref(`sluice: services.${name}: ${srv.address}: no Service ${m[1]}`); continue; }
            if (hs.spec.clusterIP !== "None") ref(`sluice: services.${name}: Service ${m[1]} is not headless (clusterIP: None)`);
            if (!hs.spec.ports.some((p) => p.port === +m[4])) ref(`sluice: services.${name}: Service ${m[1]} has no port ${m[4]}`);
            if (ns && ns !== m[2]) ref(`sluice: services.${name}: ${srv.address} names namespace ${m[2]}, kustomize puts it in ${ns}`);
            if (!srv.resolve) ref(`sluice: services.${name}: ${srv.address} without resolve: pods that come later are never used`);
        }
}

for (const [k, list] of Object.entries(problems)) {
    console.log(`#${k} ${list.length}`);
    for (const p of list) console.log(`  ${p}`);
}
EOF
    node "$TMP/check.mjs" "$NODE_ROOT" "$TMP" "${TSC:--}" "$DOCKER_UID" "${RENDERED:--}" \
        "${MANIFESTS[@]}" >"$TMP/check.out" 2>&1
    rc=$?
    report() { # report KEY NAME
        local n
        n=$(sed -n "s/^#$1 //p" "$TMP/check.out")
        if [ "$n" = 0 ]; then
            pass "$2"
        else
            fail "$2"
            awk -v k="#$1" '/^#/{on=($1==k)} on && !/^#/' "$TMP/check.out" | sed 's/^/    /'
        fi
    }
    if [ $rc -ne 0 ] || ! grep -q '^#refs ' "$TMP/check.out"; then
        fail "Kubernetes checks (node script)"
        sed 's/^/      /' "$TMP/check.out"
    else
        report schema "Kubernetes JSON schema (ajv, kubernetes-models $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$NODE_ROOT/kubernetes-models/package.json")): ${#MANIFESTS[@]} files"
        if [ -n "$TSC" ]; then
            report strict "Kubernetes types, unknown fields rejected (TypeScript $("$NODE_ROOT/typescript/bin/tsc" --version | sed 's/Version //'))"
        else
            skip "strict field check: npm package typescript not installed (npm install -g typescript@5)"
        fi
        report refs "references: selectors, ports, Secret/ConfigMap keys, HPA targets, sluice.yaml vs manifests and Dockerfile"
    fi
fi

# ---- 7. Dockerfile ----------------------------------------------------------------
if [ -f "$NODE_ROOT/dockerfile-utils/bin/dockerfile-utils" ] && have node; then
    check "dockerfile-utils lint Dockerfile" node "$NODE_ROOT/dockerfile-utils/bin/dockerfile-utils" lint Dockerfile
else
    skip "Dockerfile syntax: npm package dockerfile-utils not installed (hadolint is in neither Debian nor npm)"
fi
# Every shared library build/sluice links must come from a package the runtime stage installs.
if [ -n "$SLUICE" ] && have ldd && have dpkg; then
    runtime_pkgs() {
        awk '/^FROM /{n++} n==2' Dockerfile | tr -s ' ' '\n' | grep -E '^lib[a-z0-9.+-]+$'
    }
    libs_ok() {
        local missing="" lib pkg
        for lib in $(ldd "$SLUICE" | awk '/=>/{print $3}'); do
            pkg=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -1 | cut -d: -f1)
            [ -n "$pkg" ] || pkg=$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1)
            [ "$pkg" = libc6 ] && continue
            runtime_pkgs | grep -qx "$pkg" || missing="$missing $pkg($lib)"
        done
        [ -z "$missing" ] || { echo "not installed by the runtime stage:$missing"; return 1; }
        echo "runtime stage installs: $(runtime_pkgs | tr '\n' ' ')"
    }
    check "Dockerfile runtime stage has every library of ldd $SLUICE" libs_ok
else
    skip "Dockerfile runtime libraries: needs the sluice binary, ldd and dpkg"
fi
HC="$TMP/healthcheck.sh"
if [ -n "$PY" ]; then
    "$PY" - Dockerfile "$HC" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
m = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M)
cmd = json.loads(m.group(1)) if m else None
if not cmd or cmd[:2] != ["bash", "-c"]:
    sys.exit("Dockerfile: expected HEALTHCHECK ... CMD [\"bash\", \"-c\", SCRIPT]")
open(sys.argv[2], "w").write("#!/bin/bash\n" + cmd[2] + "\n")
EOF
fi
if have shellcheck; then
    check "shellcheck deploy/validate.sh" shellcheck -x deploy/validate.sh
    [ -s "$HC" ] && check "shellcheck the HEALTHCHECK command" shellcheck -s bash "$HC"
else
    skip "shellcheck: not installed (apt-get install shellcheck)"
fi

# ---- 8. systemd unit -----------------------------------------------------------------
if have systemd-analyze; then
    # verify wants ExecStart's binary to exist: check a copy pointing at ours.
    cp "$UNIT" "$TMP/sluice.service"
    if [ -n "$SLUICE" ]; then
        sed -i "s#/usr/local/bin/sluice#$(readlink -f "$SLUICE")#g" "$TMP/sluice.service"
    fi
    # verify exits 0 on unknown keys and bad values ("..., ignoring."): any line about
    # the unit counts as a failure.
    verify_unit() {
        local out
        out=$(systemd-analyze verify "$TMP/sluice.service" 2>&1) || { echo "$out"; return 1; }
        if printf '%s\n' "$out" | grep -q 'sluice\.service'; then echo "$out"; return 1; fi
    }
    check "systemd-analyze verify $UNIT" verify_unit
    if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
        check "systemd-analyze security --offline (exposure <= 2.0)" \
            systemd-analyze security --offline=yes --threshold=20 "$TMP/sluice.service"
    else
        skip "systemd-analyze security --offline: needs systemd >= 250"
    fi
else
    skip "systemd-analyze: not installed"
fi
stop_ok() { # TimeoutStopSec must exceed the default shutdown_timeout (30s)
    local t
    t=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\?$/\1/p' "$UNIT")
    if [ -z "$t" ] || [ "$t" -le 30 ]; then
        echo "TimeoutStopSec=${t:-unset} is not above 30s"
        return 1
    fi
}
check "$UNIT: TimeoutStopSec above shutdown_timeout's default 30s" stop_ok

# ---- 9. run sluice with both configurations, loopback only ---------------------------
# In a private network namespace (only its own loopback: nothing leaves it) and mount
# namespace (a private /etc/hosts names the backend's headless Service).
if [ -z "$SLUICE" ] || [ -z "$CONF_OK" ] || ! have unshare || ! have curl; then
    skip "run: needs the sluice binary, a ConfigMap configuration that passed sluice -t, unshare and curl"
elif ! unshare -mn true 2>/dev/null; then
    skip "run: unshare -mn is not permitted here"
else
    cat >"$TMP/run.sh" <<'EOF'
#!/bin/bash
# run.sh image|configmap SLUICE CONF IMGCONF DEMO_ORIGIN: inside unshare -mn
set -u
mode=$1 sluice=$2 conf=$3 imgconf=$4 origin=$5 tmp=$(dirname "$3")
ip link set lo up 2>/dev/null || { echo "cannot bring lo up"; exit 1; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done' EXIT
wait_http() { for _ in $(seq 1 50); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }
stop() { # stop PID SECONDS: SIGTERM, expect exit 0 within SECONDS
    kill -TERM "$1"; local t=0
    while kill -0 "$1" 2>/dev/null; do sleep 0.1; t=$((t + 1)); [ $t -le $(($2 * 10)) ] || { echo "no exit ${2}s after SIGTERM"; return 1; }; done
    wait "$1"; local rc=$?; [ $rc = 0 ] || { echo "exit status $rc after SIGTERM"; return 1; }
}
ok=0
# (a) the image's default configuration and its HEALTHCHECK command
if [ "$mode" = image ]; then
    "$sluice" -c "$imgconf" 2>"$tmp/image.log" & pid=$!; pids+=($pid)
    if wait_http http://127.0.0.1:9901/health && bash "$tmp/healthcheck.sh"; then
        code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/)
        echo "image config: HEALTHCHECK ok, GET / -> $code (404 expected: no routes)"
        [ "$code" = 404 ] || ok=1
    else
        echo "image config: /health or the HEALTHCHECK command failed"; cat "$tmp/image.log"; ok=1
    fi
    stop $pid 10 || ok=1
fi
# (b) the ConfigMap's configuration: backend name from /etc/hosts, Redis on loopback
if [ "$mode" = configmap ]; then
    cp /etc/hosts "$tmp/hosts"; mount --bind "$tmp/hosts" /etc/hosts
    name=$(sed -n 's/.*address: "\([a-z0-9.-]*\.svc[a-z0-9.-]*\):[0-9]*".*/\1/p' "$conf" | head -1)
    printf '127.0.0.1 localhost\n127.0.0.11 %s\n127.0.0.12 %s\n' "$name" "$name" >/etc/hosts
    ip addr add 127.0.0.11/8 dev lo 2>/dev/null; ip addr add 127.0.0.12/8 dev lo 2>/dev/null
    "$origin" --host 127.0.0.11 --port 8000 --name b1 >/dev/null 2>&1 & pids+=($!)
    "$origin" --host 127.0.0.12 --port 8000 --name b2 >/dev/null 2>&1 & pids+=($!)
    redis-server --bind 127.0.0.1 --port 6390 --save '' --appendonly no >/dev/null 2>&1 & pids+=($!)
    sed 's/address: *[0-9.]*:6379/address: 127.0.0.1:6390/' "$conf" >"$tmp/run.yaml"
    export SLUICE_JWT_SECRET=test-secret SLUICE_ADMIN_TOKEN=test-token
    start_sluice() {
        "$sluice" -c "$tmp/run.yaml" 2>>"$tmp/run.log" & pid=$!; pids+=($pid)
        wait_http http://127.0.0.1:9901/health || { echo "configmap config: /health never answered"; cat "$tmp/run.log"; exit 1; }
        for _ in $(seq 1 50); do
            curl -s http://127.0.0.1:9901/metrics | grep -q '^ratelimit_redis_connected [1-9]' && return 0; sleep 0.1
        done
        echo "configmap config: Redis never connected"; ok=1
    }
    start_sluice
    # Until the backends pass two health checks (5s apart) the service has no healthy
    # server: a request gets 503, and sluice must stay up.
    code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/api/blog/posts)
    sleep 0.5
    if kill -0 "$pid" 2>/dev/null; then
        echo "configmap config: request before any backend is healthy -> $code, sluice still running"
        [ "$code" = 503 ] || ok=1
    else
        wait "$pid"
        echo "configmap config: sluice DIED (exit status $?) after a request answered $code while no backend" \
             "was healthy yet (docs/deploy.md, 'Problems found in sluice'); restarting it for the remaining checks"
        ok=1
        start_sluice
    fi
    code=000; for _ in $(seq 1 150); do   # two passed health checks, 5s apart
        [ "$(curl -s http://127.0.0.1:9901/metrics | grep -c '^upstream_up{.*} 1')" = 2 ] && break; sleep 0.1
    done
    code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/api/blog/posts)
    hdr=$(curl -s -D - -o /dev/null http://127.0.0.1:8080/api/blog/posts | tr -d '\r' | grep -i '^ratelimit:')
    rev=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' http://127.0.0.1:8080/api/blog/customer-review)
    servers=$(curl -s http://127.0.0.1:9901/metrics | grep -c '^upstream_up{.*} 1')
    calls=$(curl -s http://127.0.0.1:9901/metrics | sed -n 's/^ratelimit_redis_calls_total \(.*\)/\1/p')
    api=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9901/api/services/blog/servers)
    apitok=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer test-token' http://127.0.0.1:9901/api/services/blog/servers)
    echo "configmap config: backends up: $servers; GET /api/blog/posts -> $code; $hdr;" \
         "POST customer-review without token -> $rev; Redis decisions: $calls; /api without token -> $api, with it -> $apitok"
    [ "$servers" = 2 ] && [ "$code" = 200 ] && [ -n "$hdr" ] && [ "$rev" = 401 ] && [ "${calls:-0}" -gt 0 ] &&
        [ "$api" = 401 ] && [ "$apitok" = 200 ] || { ok=1; cat "$tmp/run.log"; }
    stop $pid 25 || ok=1
fi
exit $ok
EOF
    ORIGIN=$(dirname "$SLUICE")/demo-origin
    # A headless Service whose pods all get replaced, again and again (rollouts, HPA
    # cycles): each new pod has a new address. sluice must keep following it.
    cat >"$TMP/churn.sh" <<'EOF'
#!/bin/bash
# churn.sh SLUICE ORIGIN TMP N: inside unshare -mn
set -u
sluice=$1 origin=$2 tmp=$3 n=$4
ip link set lo up || exit 1
cp /etc/hosts "$tmp/churn-hosts"; mount --bind "$tmp/churn-hosts" /etc/hosts
hosts() { printf '127.0.0.1 localhost\n127.0.9.%s blog-backend.sluice.svc.cluster.local\n' "$1" >/etc/hosts; }
cat >"$tmp/churn.yaml" <<'YAML'
listen: [127.0.0.1:8080]
admin: { listen: 127.0.0.1:9901 }
services:
  blog:
    servers: [ { address: "blog-backend.sluice.svc.cluster.local:8000", resolve: 100ms } ]
routes: [ { match: { path_prefix: / }, service: blog } ]
YAML
hosts 1
"$origin" --host "127.0.9.$n" --port 8000 >/dev/null 2>&1 & o=$!
"$sluice" -c "$tmp/churn.yaml" 2>"$tmp/churn.log" & p=$!
trap 'kill $o $p 2>/dev/null' EXIT
sleep 0.5
for i in $(seq 2 "$n"); do hosts "$i"; sleep 0.15; done
sleep 0.5
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/api/blog/posts)
added=$(grep -c 'added to service' "$tmp/churn.log")
full=$(grep -c 'pool full' "$tmp/churn.log")
echo "$n successive addresses: $added added at run time, 'cannot add (pool full)' logged $full times;" \
     "GET through sluice after the last change -> $code"
[ "$code" = 200 ]
EOF
    VERBOSE=1 check "run: the image's default config, its HEALTHCHECK command, SIGTERM" \
        unshare -mn bash "$TMP/run.sh" image "$(readlink -f "$SLUICE")" "$CONF" "$IMGCONF" "$ORIGIN"
    if [ -x "$ORIGIN" ] && have redis-server; then
        VERBOSE=1 check "run: ConfigMap config with 2 backends by DNS name, Redis, JWT, admin token, SIGTERM drain" \
            unshare -mn bash "$TMP/run.sh" configmap "$(readlink -f "$SLUICE")" "$CONF" "$IMGCONF" "$(readlink -f "$ORIGIN")"
    else
        skip "run: ConfigMap config: needs $ORIGIN (make build/demo-origin) and redis-server (Debian)"
    fi
    if [ -x "$ORIGIN" ]; then
        VERBOSE=1 check "run: follow a headless Service whose pods are replaced ${CHURN:-70} times (resolve:)" \
            unshare -mn bash "$TMP/churn.sh" "$(readlink -f "$SLUICE")" "$(readlink -f "$ORIGIN")" "$TMP" "${CHURN:-70}"
    else
        skip "run: DNS churn: needs $ORIGIN (make build/demo-origin)"
    fi
fi

# ---- 10. build and run the image with buildah (no daemon needed) ---------------------
# Only when the base image is already in local storage: no registry with it is reachable
# here (docs/deploy.md shows how to make one with debootstrap).
BASE=$(sed -n 's/^ARG DEBIAN_IMAGE=//p' Dockerfile)
if ! have buildah; then
    skip "image build: buildah not installed (apt-get install buildah)"
elif ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    skip "image build: base image $BASE is not in buildah's local storage (docs/deploy.md)"
elif [ ! -s "$HC" ] || ! have unshare; then
    skip "image build: needs python3 with yaml (for the HEALTHCHECK command) and unshare"
else
    cat >"$TMP/image.sh" <<'EOF'
#!/bin/bash
# image.sh HEALTHCHECK-SCRIPT IMAGE: inside unshare -n -p --fork --mount-proc (own loopback, own pids)
set -u
hc=$1 tag=$2
ip link set lo up || exit 1
c=$(buildah from -q "$tag") || exit 1
trap 'buildah rm "$c" >/dev/null 2>&1' EXIT
user=$(buildah run --isolation chroot "$c" -- id -u)
buildah run --isolation chroot "$c" -- /usr/local/bin/sluice -t -c /etc/sluice/sluice.yaml || exit 1
buildah run --isolation chroot "$c" -- /usr/local/bin/sluice -c /etc/sluice/sluice.yaml 2>"$hc.log" &
brun=$!
ok=1
for _ in $(seq 1 50); do
    if buildah run --isolation chroot "$c" -- bash -c "$(tail -n +2 "$hc")" 2>/dev/null; then ok=0; break; fi
    sleep 0.1
done
# SIGTERM the sluice process itself (buildah run does not forward signals).
kids() { local p; for p in $(pgrep -P "$1"); do echo "$p"; kids "$p"; done; }
pid=$(for p in $(kids "$brun"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sluice ] && echo "$p"; done | head -1)
[ -n "$pid" ] && kill -TERM "$pid"
wait "$brun"
rc=$?
echo "image: user $user; sluice -t ok; HEALTHCHECK $([ $ok = 0 ] && echo passed || echo FAILED);" \
     "after SIGTERM: $(grep -o 'all workers drained; exiting' "$hc.log" || echo 'no clean exit') (buildah run $rc)"
[ "$user" = 10001 ] && [ $ok = 0 ] && [ $rc = 0 ] && grep -q 'all workers drained' "$hc.log"
EOF
    # The build needs the network (apt-get); running the image, only a private loopback.
    build_image() {
        buildah bud --isolation chroot --pull-never --format docker -q -t localhost/sluice:validate . \
            >"$TMP/bud.log" 2>&1 || { tail -30 "$TMP/bud.log"; return 1; }
        unshare -n -p --fork --mount-proc bash "$TMP/image.sh" "$HC" localhost/sluice:validate
        local rc=$?
        buildah rmi localhost/sluice:validate >/dev/null 2>&1
        return $rc
    }
    VERBOSE=1 check "image: buildah bud (chroot isolation) of the Dockerfile, then sluice -t, HEALTHCHECK, SIGTERM in it" \
        build_image
fi

echo "validate: $npass passed, $nfail failed, $nskip skipped"
[ "$nfail" = 0 ]
