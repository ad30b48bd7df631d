"""deploy/k8s against the code: rendered like kustomize does (resources + images + the env ConfigMap), then
checked: images, env vars that name real config keys, topics equal to topic_specs, ports, probes, KEDA bounds.
`kustomize build` + `kubeconform -strict` validate what kustomize renders (scripts/k8s/validate.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from healthpipe.cli import build_parser
from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.kafka import topic_specs
from tests.unit.test_compose import _config_key_exists

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())


def render() -> list[dict]:
    docs = []
    for name in KUSTOMIZATION["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


DOCS = render()
DEPLOYMENTS = {d["metadata"]["name"]: d for d in DOCS if d["kind"] == "Deployment"}
ENV = dict(line.split("=", 1) for line in KUSTOMIZATION["configMapGenerator"][0]["literals"])
CLUSTER = HealthpipeConfig(kafka={"replication_factor": 3})


def container(name: str) -> dict:
    (c,) = DEPLOYMENTS[name]["spec"]["template"]["spec"]["containers"]
    return c


def test_kustomize_build_is_valid_against_the_kubernetes_and_crd_schemas():
    """`kustomize build` then `kubeconform -strict` (scripts/k8s/validate.py: both built from the Go module proxy,
    Kubernetes' schemas from kubernetes-validate, Strimzi's, KEDA's and the PodMonitor's vendored): every resource
    valid, none skipped for want of a schema."""
    if not shutil.which("go"):
        pytest.skip("Go is needed to build kustomize and kubeconform (CI has it: a skip there is a failure)")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "k8s" / "validate.py")], capture_output=True,
                            text=True, timeout=900)
    report = json.loads(result.stdout)
    bad = [r for r in report["resources"] if r["status"] != "statusValid"]
    assert result.returncode == 0 and not bad, bad or result.stderr
    assert report["summary"]["valid"] == len(RENDERED) and report["summary"]["skipped"] == 0


def _rendered() -> list[dict]:
    """What `kubectl apply -k` would send, as kustomize renders it (patches applied); the Python rendering above
    is the raw files, for the checks that do not depend on kustomize."""
    tools = subprocess.run([str(ROOT / "scripts" / "k8s" / "tools.sh")], capture_output=True, text=True)
    if tools.returncode != 0:
        return []
    out = subprocess.run([str(Path(tools.stdout.strip()) / "kustomize"), "build", str(K8S)], capture_output=True,
                         text=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d] if out.returncode == 0 else []


RENDERED = _rendered() if shutil.which("go") else []


def test_every_workload_is_hardened_and_bounded():
    if not RENDERED:
        pytest.skip("kustomize could not be built (needs Go)")
    workloads = [d for d in RENDERED if d["kind"] in ("Deployment", "Job")]
    assert {d["metadata"]["name"] for d in workloads} == {"producer", "consumer", "archive", "verify", "receive",
                                                          "features", "tiers-apply"}
    for d in workloads:
        pod = d["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] is True, d["metadata"]["name"]
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}, d["metadata"]["name"]
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]  # the image's HOME and probe file
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], d["metadata"]["name"]
        assert c["image"].startswith("healthpipe:"), c["image"]  # the images: override applies


def test_the_consumer_count_belongs_to_keda_and_drains_are_budgeted():
    assert "replicas" not in DEPLOYMENTS["consumer"]["spec"], "a fixed replica count fights KEDA's ScaledObject"
    budgets = {d["metadata"]["name"]: d["spec"] for d in DOCS if d["kind"] == "PodDisruptionBudget"}
    assert budgets["consumer"] == {"maxUnavailable": 1,
                                   "selector": {"matchLabels": {"app": "healthpipe", "component": "consumer"}}}
    (monitor,) = [d for d in DOCS if d["kind"] == "PodMonitor"]
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"  # the name every container gives it
    (job,) = [d for d in DOCS if d["kind"] == "Job"]
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["tiers", "apply"] and build_parser().parse_args(c["args"]).run is not None


def test_every_pipeline_process_runs_the_image_with_its_package_and_real_config_keys():
    assert set(DEPLOYMENTS) == {"producer", "consumer", "archive", "verify", "receive", "features"}
    assert KUSTOMIZATION["images"][0]["name"] == "healthpipe"
    for name in DEPLOYMENTS:
        c = container(name)
        assert c["image"] == "healthpipe"
        assert build_parser().parse_args(c["args"]).run is not None, f"{name}: `healthpipe {c['args']}` fails"
        for var in [e["name"] for e in c["env"]] + list(ENV):
            if var.startswith("HEALTHPIPE_"):
                assert _config_key_exists(var), f"{name}: {var} is not a config key"


def test_ports_and_probes_are_the_processes_own():
    cfg = HealthpipeConfig()
    ports = {"producer": cfg.producer.metrics_port, "consumer": cfg.consumer.metrics_port,
             "archive": cfg.archive.metrics_port, "verify": cfg.verify.metrics_port}
    # the receiver's one port takes remote writes and serves /metrics, /healthz, /readyz
    ports["receive"] = cfg.receive.port
    ports["features"] = cfg.features.port  # likewise: /features and the probes on one port
    for name, port in ports.items():
        c = container(name)
        annotations = DEPLOYMENTS[name]["spec"]["template"]["metadata"]["annotations"]
        kind = "http" if name in ("receive", "features") else "metrics"
        assert c["ports"] == [{"name": kind, "containerPort": port}]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(port)
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_one_producer_replaced_not_rolled():
    spec = DEPLOYMENTS["producer"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"


def test_the_topics_are_topic_specs_at_rf_3():
    topics = {d["metadata"]["name"]: d["spec"] for d in DOCS if d["kind"] == "KafkaTopic"}
    specs = {s.name: s for s in topic_specs(CLUSTER)}
    assert set(topics) == set(specs)
    for name, spec in specs.items():
        assert topics[name]["partitions"] == spec.partitions and topics[name]["replicas"] == 3
        assert {k: str(v).lower() for k, v in topics[name]["config"].items()} == \
            {k: v.lower() for k, v in spec.config.items()}


def test_the_kafka_cluster_is_three_kraft_nodes_safe_for_transactions():
    (pool,) = [d for d in DOCS if d["kind"] == "KafkaNodePool"]
    (kafka,) = [d for d in DOCS if d["kind"] == "Kafka"]
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert kafka["apiVersion"] == pool["apiVersion"] == "kafka.strimzi.io/v1"  # v1beta2 is gone in Strimzi 1.x
    assert kafka["spec"]["kafka"]["version"].startswith("4.")  # Strimzi 1.x runs Kafka 4 only
    config = kafka["spec"]["kafka"]["config"]
    assert config["transaction.state.log.replication.factor"] == 3 and config["transaction.state.log.min.isr"] == 2
    assert config["min.insync.replicas"] == 2 and config["unclean.leader.election.enable"] is False
    assert ENV["HEALTHPIPE_KAFKA__REPLICATION_FACTOR"] == "3"


def test_keda_scales_consumers_on_their_groups_lag_up_to_the_partitions():
    (scaled,) = [d for d in DOCS if d["kind"] == "ScaledObject"]
    cfg = HealthpipeConfig()
    trigger = scaled["spec"]["triggers"][0]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "consumer"
    assert scaled["spec"]["maxReplicaCount"] == cfg.kafka.partitions
    assert trigger["type"] == "kafka"
    assert (trigger["metadata"]["consumerGroup"], trigger["metadata"]["topic"]) == (cfg.kafka.group_id, cfg.kafka.topic)


@pytest.mark.parametrize("name", ["receive", "features"])
def test_the_receiver_and_the_feature_server_are_services_scaled_on_cpu(name):
    (service,) = [d for d in DOCS if d["kind"] == "Service" and d["metadata"]["name"] == name]
    (hpa,) = [d for d in DOCS if d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] == name]
    assert service["spec"]["selector"] == DEPLOYMENTS[name]["spec"]["selector"]["matchLabels"]
    port = HealthpipeConfig().receive.port if name == "receive" else HealthpipeConfig().features.port
    assert service["spec"]["ports"][0]["port"] == port
    assert hpa["spec"]["scaleTargetRef"]["name"] == name and hpa["spec"]["minReplicas"] >= 2
    assert container(name)["resources"]["requests"]["cpu"]  # the HPA's utilisation needs a request


def test_the_verify_and_archive_processes_are_there():
    assert container("verify")["args"][:2] == ["verify", "--every"]
    assert ENV["HEALTHPIPE_ARCHIVE__TARGET"] == "s3"
    assert {e["name"] for e in container("archive")["env"]} >= {"HEALTHPIPE_ARCHIVE__S3__ACCESS_KEY",
                                                                 "HEALTHPIPE_ARCHIVE__S3__SECRET_KEY"}


def test_kafka_users_are_the_principals_of_the_code():
    from healthpipe.ops.kafka_users import render as render_users

    assert (K8S / "kafka-users.yaml").read_text() == render_users(), \
        "deploy/k8s/kafka-users.yaml is stale: python -m healthpipe.ops.kafka_users > deploy/k8s/kafka-users.yaml"


def test_every_kafka_client_is_its_own_kafka_user_over_scram_and_tls():
    from healthpipe.common.principals import USERNAMES

    (kafka,) = [d for d in DOCS if d["kind"] == "Kafka"]
    assert [(x["tls"], x["authentication"]["type"]) for x in kafka["spec"]["kafka"]["listeners"]] == \
        [(True, "scram-sha-512")]
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    users = {d["metadata"]["name"] for d in DOCS if d["kind"] == "KafkaUser"}
    # the receiver runs as the producer's principal (the rights it needs are a subset: WRITE on the data topic)
    roles = {"producer": "producer", "consumer": "consumer", "archive": "archive", "verify": "reader",
             "receive": "producer", "features": "reader"}
    for name, role in roles.items():
        env = {e["name"]: e.get("value") for e in container(name)["env"]}
        user = env["HEALTHPIPE_KAFKA__SECURITY__USERNAME"]
        assert user == USERNAMES[role] and user in users, name
        assert env["HEALTHPIPE_KAFKA__SECURITY__PROTOCOL"] == "SASL_SSL"
        volumes = {v["name"]: v for v in DEPLOYMENTS[name]["spec"]["template"]["spec"]["volumes"]}
        assert volumes["kafka-user"]["secret"]["secretName"] == user  # Strimzi's Secret of that user
        mounts = {m["mountPath"] for m in container(name)["volumeMounts"]}
        assert env["HEALTHPIPE_KAFKA__SECURITY__PASSWORD_FILE"].rsplit("/", 1)[0] in mounts
        assert env["HEALTHPIPE_KAFKA__SECURITY__CA_FILE"].rsplit("/", 1)[0] in mounts
    assert ENV["HEALTHPIPE_KAFKA__BOOTSTRAP_SERVERS"].endswith(":9093")
