"""Checks rendered manifests offline; run by k8s/validate.sh in its virtualenv.

    python validate.py --k8s-version 1.33.0 --schemas DIR RENDERED.yaml... \
        [--dashboard FILE] [--rules-out FILE] [--dashboard-rules-out FILE]

Every object must validate: built-in kinds against Kubernetes' own schemas
(kubernetes-validate, strict: unknown fields are errors), CloudNativePG's Cluster and
ScheduledBackup against the CRD schemas kept in k8s/schemas, the Prometheus Operator's
objects structurally. An object of any other kind is an error. Then the rules this
repository's manifests promise (k8s/README.md): secrets only as read-only 0400 files, the
security context, probes and drain time, a Service, HPA and PDB per service, gRPC URLs and
Ingress backends that resolve, database connections within PostgreSQL's maximum. The
Grafana dashboard and the alert rules may use only the metrics the services export.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate.utils as kv
import yaml

SERVICES = {  # name -> (gRPC port, gRPC health service name)
    "records": (50051, "hospital.records.v1.Records"),
    "telemedicine": (50052, "hospital.telemedicine.v1.Telemedicine"),
    "billing": (50053, "hospital.billing.v1.Billing"),
}
SECRETS_DIR = "/run/secrets/hospital"
# Settings that are secrets: never an environment variable or a ConfigMap key.
SECRET_SETTINGS = {
    "DATABASE_URL", "HOSPITAL_CASSO_KEY", "HOSPITAL_SEPAY_API_KEY", "HOSPITAL_SEPAY_HMAC_SECRET",
    "HOSPITAL_PAYOS_CHECKSUM_KEY", "HOSPITAL_VNPAY_HASH_SECRET", "HOSPITAL_OAUTH_CLIENT_SECRET",
    "HOSPITAL_VISIT_SECRET", "HOSPITAL_TURN_SECRET", "HOSPITAL_JWT_SECRET",
}
# The metrics the services export (services/telemetry/src/metrics.rs), with the series a
# histogram adds.
METRICS = {
    "hospital_http_requests_total", "hospital_grpc_requests_total",
    "hospital_db_pool_connections", "hospital_db_pool_max_connections",
    "hospital_bookings_total", "hospital_invoices_issued_total", "hospital_payments_total",
    "hospital_webhook_signature_failures_total", "hospital_signalling_sessions",
    "hospital_signalling_sessions_total", "hospital_ready",
    "process_resident_memory_bytes", "process_cpu_seconds_total",
} | {
    f"{h}_{suffix}"
    for h in ("hospital_http_request_duration_seconds", "hospital_grpc_request_duration_seconds",
              "hospital_audit_group_size", "hospital_write_group_size")
    for suffix in ("bucket", "sum", "count")
}
CRD_SCHEMAS = {  # (apiVersion, kind) -> file in --schemas
    ("postgresql.cnpg.io/v1", "Cluster"): "cluster_v1.json",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): "scheduledbackup_v1.json",
}
MONITORING = {("monitoring.coreos.com/v1", "PrometheusRule"), ("monitoring.coreos.com/v1", "PodMonitor")}

errors: list[str] = []


def fail(where: str, message: str) -> None:
    errors.append(f"{where}: {message}")


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# ------------------------------------------------------------------------------ schemas

def validate_schema(path: str, obj: dict, version: str, schemas: Path) -> None:
    where = f"{path} {name_of(obj)}"
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_SCHEMAS:
        schema = json.loads((schemas / CRD_SCHEMAS[key]).read_text())
        validator = jsonschema.Draft202012Validator(schema)
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            fail(where, f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
        return
    if key in MONITORING:
        if not obj.get("metadata", {}).get("name") or not isinstance(obj.get("spec"), dict):
            fail(where, "needs metadata.name and a spec")
        return
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as e:
        fail(where, f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}")
    except kv.SchemaNotFoundError:
        fail(where, f"no schema for {key[0]} {key[1]} (Kubernetes {version}): a kind this "
                    "script does not know")


# ------------------------------------------------------------------------------ rules

def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def check_pod(where: str, spec: dict) -> None:
    psc = spec.get("securityContext", {})
    for k, v in {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001}.items():
        if psc.get(k) != v:
            fail(where, f"pod securityContext.{k} must be {v}")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail(where, "pod seccompProfile must be RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken must be false")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    secrets = volumes.get("secrets", {}).get("projected")
    if not secrets:
        fail(where, "needs the projected volume `secrets`")
    else:
        if secrets.get("defaultMode") != 0o400:
            fail(where, "the secrets volume needs defaultMode 0400")
        names = [s.get("secret", {}).get("name") for s in secrets.get("sources", [])]
        if "hospital-secrets" not in names:
            fail(where, "the secrets volume must project the Secret hospital-secrets")
        for s in secrets.get("sources", []):
            for item in s.get("secret", {}).get("items", []):
                if item.get("mode") not in (None, 0o400):
                    fail(where, f"secret file {item.get('path')} must keep mode 0400")
    if "tmp" not in volumes or "emptyDir" not in volumes["tmp"]:
        fail(where, "needs an emptyDir `tmp` (the root filesystem is read-only)")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(cw, "readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(cw, "allowPrivilegeEscalation must be false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            fail(cw, "capabilities must drop ALL")
        if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
            fail(cw, "needs resource requests and limits")
        env = {e["name"]: e for e in c.get("env", [])}
        if env.get("HOSPITAL_SECRETS_DIR", {}).get("value") != SECRETS_DIR:
            fail(cw, f"HOSPITAL_SECRETS_DIR must be {SECRETS_DIR}")
        for secret in SECRET_SETTINGS & env.keys():
            fail(cw, f"{secret} is a secret: a file in {SECRETS_DIR}, not an environment variable")
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        m = mounts.get("secrets")
        if not m or m.get("mountPath") != SECRETS_DIR or m.get("readOnly") is not True:
            fail(cw, f"must mount the secrets volume read-only at {SECRETS_DIR}")


def check_service_deployment(where: str, dep: dict, config: dict) -> None:
    name = dep["metadata"]["name"]
    port, health = SERVICES[name]
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    if labels.get("app.kubernetes.io/name") != name or labels.get("app.kubernetes.io/part-of") != "hospital":
        fail(where, "pods need the labels app.kubernetes.io/name and app.kubernetes.io/part-of")
    if dep["spec"].get("replicas", 1) < 2:
        fail(where, "needs at least 2 replicas")
    strategy = dep["spec"].get("strategy", {})
    if strategy.get("type") != "RollingUpdate" or strategy.get("rollingUpdate", {}).get("maxUnavailable") != 0:
        fail(where, "needs a RollingUpdate with maxUnavailable 0")
    spec = pod_spec(dep)
    if not spec.get("topologySpreadConstraints") and not spec.get("affinity", {}).get("podAntiAffinity"):
        fail(where, "needs topologySpreadConstraints or podAntiAffinity")
    drain = int(config.get("HOSPITAL_DRAIN_SECS", "5"))
    if spec.get("terminationGracePeriodSeconds", 30) < drain + 15:
        fail(where, f"terminationGracePeriodSeconds must be at least the drain time + 15 ({drain + 15})")
    c = spec["containers"][0]
    if c.get("args") != [name]:
        fail(where, f"the container's args must be [{name}]")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports != {"http": 8080, "grpc": port, "metrics": 9090}:
        fail(where, f"container ports must be http 8080, grpc {port}, metrics 9090: {ports}")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    expected = {"HOSPITAL_HTTP_ADDR": "0.0.0.0:8080", f"HOSPITAL_{name.upper()}_GRPC_ADDR": f"0.0.0.0:{port}",
                "HOSPITAL_METRICS_ADDR": "0.0.0.0:9090", "OTEL_SERVICE_NAME": name}
    for k, v in expected.items():
        if env.get(k) != v:
            fail(where, f"{k} must be {v}")
    http_get = lambda probe: (c.get(probe, {}).get("httpGet") or {})  # noqa: E731
    if http_get("startupProbe").get("path") != "/healthz":
        fail(where, "the startup probe is GET /healthz")
    if http_get("readinessProbe").get("path") != "/readyz":
        fail(where, "the readiness probe is GET /readyz")
    startup = c.get("startupProbe", {})
    if startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) < 300:
        fail(where, "the startup probe must allow at least 5 minutes (an index rebuild at start)")
    grpc = c.get("livenessProbe", {}).get("grpc", {})
    if grpc.get("port") != port or grpc.get("service") not in (health, ""):
        fail(where, f"the liveness probe is gRPC health on {port} ({health})")


def check_rules(path: str, objs: list[dict]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != "hospital":
            fail(f"{path} {name_of(o)}", "must be in the namespace hospital")
    # hospital-config is generated: its name carries a hash of its content.
    configs = {n: c for n, c in by_kind.get("ConfigMap", {}).items() if n.startswith("hospital-config")}
    config = next(iter(configs.values()), {}).get("data", {})
    if by_kind.get("Deployment") and len(configs) != 1:
        fail(path, "needs one ConfigMap hospital-config")
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            for c in pod_spec(o)["containers"]:
                refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
                if refs != list(configs):
                    fail(f"{path} {name_of(o)}", f"must take its environment from the ConfigMap hospital-config: {refs}")
    for secret in SECRET_SETTINGS & config.keys():
        fail(f"{path} ConfigMap/hospital-config", f"{secret} is a secret: not a ConfigMap key")
    services = by_kind.get("Service", {})
    for name, dep in by_kind.get("Deployment", {}).items():
        where = f"{path} Deployment/{name}"
        if name not in SERVICES:
            fail(where, "not one of the services")
            continue
        check_pod(where, pod_spec(dep))
        check_service_deployment(where, dep, config)
        port = SERVICES[name][0]
        svc = services.get(name)
        if not svc:
            fail(where, "has no Service")
        else:
            sports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
            if sports != {"http": 8080, "grpc": port, "metrics": 9090}:
                fail(f"{path} Service/{name}", f"ports must be http 8080, grpc {port}, metrics 9090: {sports}")
        hpa = by_kind.get("HorizontalPodAutoscaler", {}).get(name)
        if not hpa:
            fail(where, "has no HorizontalPodAutoscaler")
        elif hpa["spec"]["minReplicas"] < 2 or hpa["spec"]["scaleTargetRef"]["name"] != name:
            fail(f"{path} HorizontalPodAutoscaler/{name}", "must scale this Deployment, from at least 2")
        pdb = by_kind.get("PodDisruptionBudget", {}).get(name)
        if not pdb or pdb["spec"].get("minAvailable", 0) < 1:
            fail(where, "needs a PodDisruptionBudget with minAvailable of at least 1")
        url = config.get(f"HOSPITAL_{name.upper()}_GRPC_URL")
        if url != f"http://{name}:{port}":
            fail(f"{path} ConfigMap/hospital-config", f"HOSPITAL_{name.upper()}_GRPC_URL must be http://{name}:{port}")
    for name, job in by_kind.get("Job", {}).items():
        where = f"{path} Job/{name}"
        check_pod(where, pod_spec(job))
        if pod_spec(job)["containers"][0].get("args") != ["migrate"]:
            fail(where, "runs `hospital migrate`")
        notes = job["metadata"].get("annotations", {})
        if notes.get("argocd.argoproj.io/hook") != "PreSync" or "pre-upgrade" not in notes.get("helm.sh/hook", ""):
            fail(where, "needs the Argo CD PreSync and Helm pre-install/pre-upgrade hook annotations")
    for name, ing in by_kind.get("Ingress", {}).items():
        for rule in ing["spec"].get("rules", []):
            for p in rule.get("http", {}).get("paths", []):
                b = p["backend"].get("service", {})
                svc = services.get(b.get("name"))
                ports = [(sp["port"], sp.get("name")) for sp in svc["spec"]["ports"]] if svc else []
                port = b.get("port", {})
                if not any(port.get("number") == n or port.get("name") == pn for n, pn in ports):
                    fail(f"{path} Ingress/{name}", f"path {p.get('path')} goes to {b.get('name')} port {port}, which no Service here serves")
                elif port.get("number", 8080) != 8080 and port.get("name", "http") != "http":
                    fail(f"{path} Ingress/{name}", f"path {p.get('path')} must go to the HTTP port (8080)")
        hosts = {r.get("host") for r in ing["spec"].get("rules", []) if r.get("host")}
        public = re.sub(r"^https?://([^/:]+).*$", r"\1", config.get("HOSPITAL_PUBLIC_URL", ""))
        if hosts and public not in hosts:
            fail(f"{path} ConfigMap/hospital-config", f"HOSPITAL_PUBLIC_URL names {public}, which the Ingress does not serve ({sorted(hosts)})")
    cluster = by_kind.get("Cluster", {}).get("hospital-db")
    if cluster and by_kind.get("Deployment"):
        pg_max = int(cluster["spec"].get("postgresql", {}).get("parameters", {}).get("max_connections", "100"))
        pool = int(config.get("HOSPITAL_DB_MAX_CONNECTIONS", "16"))
        most = sum(h["spec"]["maxReplicas"] for h in by_kind.get("HorizontalPodAutoscaler", {}).values())
        need = most * pool + pool  # every replica at the HPAs' maximum, and the Job
        if need > pg_max - 10:  # PostgreSQL keeps a few for superusers and the operator
            fail(f"{path} Cluster/hospital-db", f"max_connections {pg_max} is too few for {most} replicas x {pool} connections (+ the Job)")
        for o in objs:
            if o["kind"] in ("Deployment", "Job"):
                sources = [s.get("secret", {}) for v in pod_spec(o).get("volumes", []) if v["name"] == "secrets"
                           for s in v["projected"]["sources"]]
                if {"name": "hospital-db-app", "items": [{"key": "uri", "path": "DATABASE_URL"}]} not in sources:
                    fail(f"{path} {name_of(o)}", "must project hospital-db-app's key uri as DATABASE_URL")


# ------------------------------------------------------------------------------ metrics

METRIC_RE = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{|\[)")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
                "and", "or", "unless"}


def metric_names(expr: str) -> set[str]:
    """Metric names of a PromQL expression: identifiers followed by a selector or range."""
    return {m for m in METRIC_RE.findall(expr) if m not in PROMQL_WORDS}


def check_exprs(where: str, exprs: list[str]) -> None:
    if not exprs:
        fail(where, "has no queries")
    for e in exprs:
        unknown = metric_names(e) - METRICS
        if unknown:
            fail(where, f"uses metrics the services do not export: {sorted(unknown)}")
        if not metric_names(e):
            fail(where, f"query names no metric: {e}")


def check_dashboard(path: str, rules_out: str | None) -> None:
    d = json.loads(Path(path).read_text())
    recorded = []
    variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail(path, "needs the variable `datasource` of type datasource, query prometheus")
    ids = set()
    for p in d.get("panels", []):
        if p["id"] in ids:
            fail(path, f"panel id {p['id']} twice")
        ids.add(p["id"])
        if p["type"] == "row":
            continue
        where = f"{path} panel '{p['title']}'"
        if p.get("datasource", {}).get("uid") != "${datasource}":
            fail(where, "must use the datasource ${datasource}")
        check_exprs(where, [t["expr"] for t in p.get("targets", [])])
        for t in p.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", "5m").replace("$namespace", ".*").replace("$service", ".*")
            recorded.append({"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": expr})
    if rules_out:  # the panels' queries as recording rules, so that promtool parses them
        Path(rules_out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}, sort_keys=False))


def check_alerts(objs: list[dict], rules_out: str | None) -> None:
    groups = []
    for o in objs:
        if o["kind"] != "PrometheusRule":
            continue
        for g in o["spec"]["groups"]:
            groups.append(g)
            for r in g["rules"]:
                where = f"PrometheusRule/{o['metadata']['name']} alert {r.get('alert')}"
                if not r.get("annotations", {}).get("description"):
                    fail(where, "needs a description (what it means, what to do first)")
                if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                    fail(where, "needs a severity label")
                check_exprs(where, [r["expr"]])
    if rules_out:  # the rule groups alone, for promtool
        Path(rules_out).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, allow_unicode=True))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-version", required=True)
    ap.add_argument("--schemas", required=True)
    ap.add_argument("--dashboard")
    ap.add_argument("--rules-out", help="write the alert rule groups here (for promtool)")
    ap.add_argument("--dashboard-rules-out", help="write the dashboard's queries here as recording rules (for promtool)")
    ap.add_argument("rendered", nargs="+")
    args = ap.parse_args()
    schemas = Path(args.schemas)
    counts = {}
    all_objs = []
    for path in args.rendered:
        objs = [o for o in yaml.safe_load_all(Path(path).read_text()) if o]
        label = Path(path).name
        for o in objs:
            validate_schema(label, o, args.k8s_version, schemas)
        check_rules(label, objs)
        counts[label] = len(objs)
        all_objs += objs
    check_alerts(all_objs, args.rules_out)
    if args.dashboard:
        check_dashboard(args.dashboard, args.dashboard_rules_out)
    for e in errors:
        print(f"FAIL {e}")
    summary = ", ".join(f"{k}: {v} objects" for k, v in counts.items())
    print(f"{'FAILED' if errors else 'ok'}: {summary}; {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
