"""The deployment files: docker-compose.yml and deploy/k8s use exactly the settings names the
services read; every Kubernetes overlay builds with kustomize, passes kubeconform (strict, the
Kubernetes API's and the operators' CRD schemas) and deploys each service whole.

The Kubernetes tools come from `scripts/install-k8s-tools.sh` (scripts/test.sh runs it); without
them these tests are skipped, unless DRGDIP_TEST_REQUIRE_SERVERS=1, when they fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml
from helpers import REPO

from drgdip.stages import SETTINGS_BY_SERVICE
from shared.events import ALL_TOPICS, CASE_RECEIVED
from shared.settings import env_names

KNOWN = set().union(*(env_names(cls) for cls in SETTINGS_BY_SERVICE.values()))
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
SERVICES = sorted(SETTINGS_BY_SERVICE)
INTERNAL = [s for s in SERVICES if s != "gateway"]
# Secrets the overlays refer to without making them: CloudNativePG makes the database's; in
# production the operator creates drgdip-secrets before the first apply (README: Deployment).
MADE_ELSEWHERE = {"drgdip-pg-app": "CloudNativePG", "drgdip-secrets": "the operator (prod)"}
METRICS_NAMESPACE = {"drgdip-metrics": "scrape"}
Doc = dict[str, Any]


# --- the settings names --------------------------------------------------------------------------

def test_every_drgdip_variable_in_the_deployment_is_a_real_setting() -> None:
    for path in [REPO / "docker-compose.yml", *sorted(K8S.rglob("*.yaml"))]:
        names = set(re.findall(r"\b(DRGDIP_[A-Z_]+)\b", path.read_text()))
        names.discard("DRGDIP_SCHEMES")  # compose's own variable for the host folder of schemes
        assert names <= KNOWN, f"{path.relative_to(REPO)}: unknown settings {sorted(names - KNOWN)}"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_composed_with_its_database(service: str) -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    block = compose.split(f"\n  {service}:\n", 1)[1].split("\n\n", 1)[0]
    assert f'command: ["{service}"]' in block and "DRGDIP_DB:" in block


def test_settings_fail_fast_on_bad_values() -> None:
    from pydantic import ValidationError

    from services.grouper.config import GrouperSettings

    with pytest.raises(ValidationError, match="bus"):
        GrouperSettings(bus="amqp://x")
    with pytest.raises(ValidationError, match="code_mode"):
        GrouperSettings(code_mode="fuzzy")
    with pytest.raises(ValidationError, match="db"):
        GrouperSettings(db="mysql://x")


# --- Kubernetes: build and validate ----------------------------------------------------------------

@cache
def tools() -> dict[str, str]:
    env_file = REPO / ".cache" / "k8s-tools" / "current.env"
    found = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line) \
        if env_file.exists() else {}
    paths = [REPO / found[k] for k in ("KUSTOMIZE", "KUBECONFORM", "K8S_SCHEMAS") if k in found]
    if len(paths) < 3 or not all(p.exists() for p in paths):
        message = "kustomize/kubeconform not installed: run `bash scripts/install-k8s-tools.sh`"
        if os.environ.get("DRGDIP_TEST_REQUIRE_SERVERS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return {k: str(REPO / v) if k != "K8S_VERSION" else v for k, v in found.items()}


@cache
def _build(overlay: str) -> str:
    run = subprocess.run([tools()["KUSTOMIZE"], "build", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def rendered(overlay: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(_build(overlay)) if d]


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def deployment(docs: list[Doc], service: str) -> Doc:
    return of_kind(docs, "Deployment")[f"drgdip-{service}"]


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def config(docs: list[Doc]) -> dict[str, str]:
    return of_kind(docs, "ConfigMap")["drgdip-common"]["data"]


def test_the_overlays_are_dev_and_prod() -> None:
    assert OVERLAYS == ["dev", "prod"]


def kubeconform(manifests: str) -> subprocess.CompletedProcess:
    """kubeconform, strict, on the Kubernetes API's schemas and the CRDs' (none may be missing)."""
    t = tools()
    schemas = t["K8S_SCHEMAS"]
    return subprocess.run(
        [t["KUBECONFORM"], "-strict", "-summary", "-output", "json",
         "-kubernetes-version", t["K8S_VERSION"],
         "-schema-location", schemas + "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}"
                                       "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
         "-schema-location", schemas + "/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
         "-"],
        input=manifests, capture_output=True, text=True, timeout=120)


def problems(run: subprocess.CompletedProcess) -> list[str]:
    report = json.loads(run.stdout)
    return [f"{r['kind']} {r['name']}: {r['msg']}" for r in report["resources"] if r["status"] != "statusValid"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_passes_strict_schema_validation_crds_included(overlay: str) -> None:
    run = kubeconform(_build(overlay))
    assert run.returncode == 0 and not problems(run), "\n".join(problems(run)) or run.stderr
    summary = json.loads(run.stdout)["summary"]
    # nothing skipped for want of a schema: the Strimzi, CloudNativePG and KEDA kinds are checked
    assert (summary["invalid"], summary["errors"], summary["skipped"]) == (0, 0, 0)
    assert summary["valid"] == len(rendered(overlay))
    kinds = {d["kind"] for d in rendered(overlay)}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "Database", "Deployment"} <= kinds


def test_schema_validation_rejects_what_the_api_server_would() -> None:
    """The schemas are strict: a misplaced field (the old manifests' env at container level) or a
    wrong type in a custom resource is caught, not skipped."""
    docs = rendered("prod")
    deployment(docs, "ingest")["spec"]["template"]["spec"]["containers"].append(
        {"name": "DRGDIP_DB", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}})
    of_kind(docs, "KafkaTopic")[CASE_RECEIVED]["spec"]["partitions"] = "six"
    of_kind(docs, "ScaledObject")["drgdip-grouper"]["spec"]["maxReplicas"] = 6
    of_kind(docs, "Cluster")["drgdip-pg"]["spec"]["instance"] = 3
    run = kubeconform(yaml.safe_dump_all(docs))
    assert run.returncode == 1
    assert sorted(p.split(":")[0] for p in problems(run)) == [
        "Cluster drgdip-pg", "Deployment drgdip-ingest", f"KafkaTopic {CASE_RECEIVED}", "ScaledObject drgdip-grouper"]


def test_the_schemes_upload_pod_is_valid_and_mounts_the_schemes_claim() -> None:
    text = (K8S / "schemes-upload.yaml").read_text()
    run = kubeconform(text)
    assert run.returncode == 0, "\n".join(problems(run)) or run.stderr
    [volume] = yaml.safe_load(text)["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] in of_kind(rendered("prod"), "PersistentVolumeClaim")


# --- Kubernetes: what each overlay deploys -------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_an_image_probes_and_resources(overlay: str) -> None:
    docs = rendered(overlay)
    assert sorted(of_kind(docs, "Deployment")) == [f"drgdip-{s}" for s in SERVICES]
    for name, d in of_kind(docs, "Deployment").items():
        pod = d["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{overlay} {name}/{c['name']}"
            image = c.get("image", "")
            assert re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+", image) and not image.endswith(":latest"), where
            assert c["resources"]["requests"].keys() >= {"cpu", "memory"}, where
            assert "memory" in c["resources"]["limits"], where
        [main] = pod["containers"]
        assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}, name
        assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, name
        assert main["startupProbe"]["httpGet"]["path"] == "/livez", name
        assert main["ports"] == [{"containerPort": 8000, "name": "http"}], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_pod_disruption_budget(overlay: str) -> None:
    docs = rendered(overlay)
    budgets = list(of_kind(docs, "PodDisruptionBudget").values())
    for name, d in of_kind(docs, "Deployment").items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        mine = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert len(mine) == 1, name
        assert mine[0]["spec"] == {"maxUnavailable": 1, "selector": mine[0]["spec"]["selector"]}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_is_reachable_from_outside(overlay: str) -> None:
    docs = rendered(overlay)
    policies = list(of_kind(docs, "NetworkPolicy").values())
    gateway = deployment(docs, "gateway")["spec"]["template"]["metadata"]["labels"]
    assert not [p for p in policies if selects(p["spec"]["podSelector"], gateway)]
    for service in INTERNAL:
        labels = deployment(docs, service)["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        assert mine and all("Ingress" in p["spec"]["policyTypes"] for p in mine), service
        for rule in (r for p in mine for r in p["spec"].get("ingress", [])):
            assert rule.get("from"), f"{service}: a rule open to every source"
            for peer in rule["from"]:
                from_gateway = set(peer) == {"podSelector"} and selects(peer["podSelector"], gateway)
                from_metrics = peer == {"namespaceSelector": {"matchLabels": METRICS_NAMESPACE}}
                assert from_gateway or from_metrics, f"{service}: {peer}"
            assert rule["ports"] == [{"port": "http", "protocol": "TCP"}], service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_come_from_the_config_map_and_secrets(overlay: str) -> None:
    docs = rendered(overlay)
    made = set(of_kind(docs, "Secret"))
    cluster = next(iter(of_kind(docs, "Cluster")))
    for service in SERVICES:
        pod = deployment(docs, service)["spec"]["template"]["spec"]
        [main] = pod["containers"]
        assert main["envFrom"] == [{"configMapRef": {"name": "drgdip-common"}}]
        env = env_of(main)
        for name in ("DRGDIP_SERVICE_TOKEN", "DB_USER", "DB_PASSWORD") + (
                ("DRGDIP_PSN_KEY_SECRET",) if service == "ingest" else ()):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] in made or ref["name"] in MADE_ELSEWHERE, (service, name)
        assert env["DB_USER"]["valueFrom"]["secretKeyRef"] == {"name": f"{cluster}-app", "key": "username"}
        assert env["DRGDIP_DB"]["value"] == \
            f"postgresql+asyncpg://$(DB_USER):$(DB_PASSWORD)@{cluster}-rw:5432/{service}"
        assert [e["name"] for e in main["env"]].index("DRGDIP_DB") > \
            [e["name"] for e in main["env"]].index("DB_PASSWORD")  # $(VAR) needs it defined before
        for e in main["env"]:  # no secret as a literal value
            if e["name"] in ("DRGDIP_SERVICE_TOKEN", "DRGDIP_PSN_KEY_SECRET", "DB_PASSWORD"):
                assert "valueFrom" in e, (service, e["name"])
    if overlay == "prod":
        assert not of_kind(docs, "Secret"), "prod ships no secret values: an apply would reset them"
    assert config(docs)["DRGDIP_ENVIRONMENT"] == ("development" if overlay == "dev" else "production")
    assert config(docs)["DRGDIP_BUS"] == f"kafka://{next(iter(of_kind(docs, 'Kafka')))}-kafka-bootstrap:9092"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_run_first_with_the_command_and_the_image_of_the_service(overlay: str) -> None:
    docs = rendered(overlay)
    databases = {d["spec"]["name"] for d in of_kind(docs, "Database").values()}
    assert databases == set(SERVICES)
    for service in SERVICES:
        pod = deployment(docs, service)["spec"]["template"]["spec"]
        [migrate] = pod["initContainers"]
        [main] = pod["containers"]
        assert migrate["command"] == ["drgdip", "migrate", "--service", service]
        assert migrate["image"] == main["image"]
        assert env_of(migrate)["DRGDIP_DB"] == env_of(main)["DRGDIP_DB"]
        assert main["args"] == [service]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_are_the_applications_with_partitions_and_replication(overlay: str) -> None:
    docs = rendered(overlay)
    topics = of_kind(docs, "KafkaTopic")
    assert sorted(t["spec"]["topicName"] for t in topics.values()) == sorted(ALL_TOPICS)
    replicas = 1 if overlay == "dev" else 3
    min_isr = 1 if overlay == "dev" else 2
    settings = config(docs)
    kafka = next(iter(of_kind(docs, "Kafka").values()))
    [pool] = of_kind(docs, "KafkaNodePool").values()
    for t in topics.values():
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert t["spec"]["partitions"] == int(settings["DRGDIP_PARTITIONS"])
        assert t["spec"]["replicas"] == replicas
        assert t["spec"]["config"]["min.insync.replicas"] == min_isr
    assert int(settings["DRGDIP_TOPIC_REPLICATION"]) == replicas
    assert pool["spec"]["replicas"] == replicas and set(pool["spec"]["roles"]) == {"controller", "broker"}
    broker = kafka["spec"]["kafka"]["config"]
    assert (broker["default.replication.factor"], broker["min.insync.replicas"]) == (replicas, min_isr)
    assert broker["offsets.topic.replication.factor"] == replicas
    assert "topicOperator" in kafka["spec"]["entityOperator"]


def test_the_grouper_scales_on_consumer_lag_and_cpu_up_to_the_partitions() -> None:
    docs = rendered("prod")
    [scaler] = of_kind(docs, "ScaledObject").values()
    assert scaler["spec"]["scaleTargetRef"]["name"] == "drgdip-grouper"
    assert scaler["spec"]["maxReplicaCount"] == int(config(docs)["DRGDIP_PARTITIONS"])
    assert scaler["spec"]["minReplicaCount"] >= 2
    kafka, cpu = scaler["spec"]["triggers"]
    assert kafka["type"] == "kafka" and cpu["type"] == "cpu"
    meta = kafka["metadata"]
    assert (meta["topic"], meta["consumerGroup"]) == (CASE_RECEIVED, "grouper")
    assert int(meta["lagThreshold"]) > 0 and meta["allowIdleConsumers"] == "false"
    namespace = deployment(docs, "grouper")["metadata"]["namespace"]
    assert meta["bootstrapServers"] == f"drgdip-kafka-kafka-bootstrap.{namespace}.svc:9092"
    assert not of_kind(docs, "HorizontalPodAutoscaler"), "KEDA owns the grouper's autoscaler"


def test_dev_is_one_of_everything_and_prod_more() -> None:
    dev, prod = rendered("dev"), rendered("prod")
    assert {d["spec"]["replicas"] for d in of_kind(dev, "Deployment").values()} == {1}
    assert min(deployment(prod, s)["spec"]["replicas"] for s in SERVICES if s != "grouper") >= 2
    assert "replicas" not in deployment(prod, "grouper")["spec"]  # KEDA's to set, never reset
    assert not of_kind(dev, "ScaledObject")
    assert [c["spec"]["instances"] for c in of_kind(dev, "Cluster").values()] == [1]
    assert [c["spec"]["instances"] for c in of_kind(prod, "Cluster").values()] == [3]
    for docs, namespace in ((dev, "drgdip-dev"), (prod, "drgdip")):
        assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {namespace}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grouper_reads_the_schemes_from_the_bureaus_volume(overlay: str) -> None:
    docs = rendered(overlay)
    pod = deployment(docs, "grouper")["spec"]["template"]["spec"]
    [main] = pod["containers"]
    folder = env_of(main)["DRGDIP_SCHEMES_DIR"]["value"]
    [mount] = [m for m in main["volumeMounts"] if m["mountPath"] == folder]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim in of_kind(docs, "PersistentVolumeClaim")
    if overlay == "prod":  # groupers on several nodes mount it together
        assert of_kind(docs, "PersistentVolumeClaim")[claim]["spec"]["accessModes"] == ["ReadWriteMany"]


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Does a label selector (matchLabels, matchExpressions) select pods with these labels?"""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        value, op = labels.get(e["key"]), e["operator"]
        if (op == "In" and value not in e["values"]) or (op == "NotIn" and value in e["values"]) \
                or (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True
