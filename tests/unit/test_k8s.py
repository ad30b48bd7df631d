"""deploy/k8s against the code: rendered like kustomize does (resources + images + the env ConfigMap), then
checked: images, env vars that name real config keys, topics equal to topic_specs, ports, probes, KEDA bounds.
`kubectl kustomize` also renders it when kubectl is installed (it is only a client: no cluster is needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def test_kubectl_kustomize_renders_it_when_kubectl_is_there():
    if not shutil.which("kubectl"):
        if os.environ.get("CI") == "true":
            pytest.skip("kubectl is not installed on this machine (the Python rendering above is the check)")
        pytest.skip("kubectl not installed")
    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout) if d)
    assert kinds == sorted(d["kind"] for d in DOCS + [{"kind": "ConfigMap"}])


def test_every_pipeline_process_runs_the_image_with_its_package_and_real_config_keys():
    assert set(DEPLOYMENTS) == {"producer", "consumer", "archive", "verify"}
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
    for name, port in ports.items():
        c = container(name)
        annotations = DEPLOYMENTS[name]["spec"]["template"]["metadata"]["annotations"]
        assert c["ports"] == [{"name": "metrics", "containerPort": port}]
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
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
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


def test_the_verify_and_archive_processes_are_there():
    assert container("verify")["args"][:2] == ["verify", "--every"]
    assert ENV["HEALTHPIPE_ARCHIVE__TARGET"] == "s3"
    assert {e["name"] for e in container("archive")["env"]} >= {"HEALTHPIPE_ARCHIVE__S3__ACCESS_KEY",
                                                                 "HEALTHPIPE_ARCHIVE__S3__SECRET_KEY"}
