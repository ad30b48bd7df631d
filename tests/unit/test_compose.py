"""docker-compose.yml and compose.local.yml: valid for Compose v2, and in agreement with the config defaults, the
native stack and each other. `docker compose config` needs no engine (scripts/docker/compose.sh builds Compose v2);
tests/compose runs the files for real."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from healthpipe.cli import build_parser
from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.kafka import topic_specs
from healthpipe.ops import stack
from healthpipe.ops.stack.compose import env_from_example

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
LOCAL = yaml.safe_load((ROOT / "compose.local.yml").read_text().replace("!reset", ""))["services"]
SECRETS = {"INFLUXDB_TOKEN": "t" * 20, "S3_ACCESS_KEY": "a" * 16, "S3_SECRET_KEY": "b" * 20}
HEALTHPIPE_SERVICES = ("demo-app", "producer", "consumer", "verify", "archive", "tiers-init", "influxdb-init",
                       "receive", "features")


def compose_config(*args: str) -> dict:
    """`docker compose ... config` rendered as a dict (Compose v2: no engine needed)."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("Compose v2 is missing: scripts/docker/compose.sh builds it (.ci/run does)")
        pytest.skip("Compose v2 missing (scripts/docker/compose.sh)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "COMPOSE_"))}
    command = ["docker", "compose", "--project-directory", str(ROOT), *args, "config", "--format", "json"]
    result = subprocess.run(command, env={**env, **SECRETS}, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_cold_and_warm_tiers_run_in_compose():
    archive = SERVICES["archive"]["environment"]
    assert archive["HEALTHPIPE_ARCHIVE__TARGET"] == "s3"
    assert archive["HEALTHPIPE_ARCHIVE__S3__ENDPOINT"] == "http://s3:8333"
    assert "-bucket=healthpipe-archive" in SERVICES["s3"]["command"]
    assert HealthpipeConfig().archive.s3.bucket == "healthpipe-archive"
    assert SERVICES["tiers-init"]["command"] == ["tiers", "apply"]


# Every command line the README documents, and the local variant CI runs.
README_COMMANDS = {
    "default": [],
    "cluster": ["--env-file", "config/compose-cluster.env", "--profile", "cluster"],
    "local": ["-f", "docker-compose.yml", "-f", "compose.local.yml"],
    "local cluster": ["-f", "docker-compose.yml", "-f", "compose.local.yml", "--env-file",
                      "config/compose-cluster.env", "--profile", "cluster"],
    "secure": ["--env-file", "config/compose-secure.env", "--profile", "secure"],
    "local secure": ["-f", "docker-compose.yml", "-f", "compose.local.yml", "--env-file",
                     "config/compose-secure.env", "--profile", "secure"],
    "secure cluster": ["--env-file", "config/compose-secure.env", "--env-file", "config/compose-cluster.env",
                       "--profile", "secure", "--profile", "cluster"],
}


@pytest.mark.parametrize("name", README_COMMANDS)
def test_compose_config_renders_every_documented_command_line(name):
    """(`up --scale consumer=3` changes no configuration: it is the default's.)"""
    rendered = compose_config(*README_COMMANDS[name])
    assert {"kafka", "kafka-init", "influxdb", "influxdb-init", "producer", "consumer"} <= set(rendered["services"])
    if "cluster" in name:
        assert {"kafka-2", "kafka-3"} <= set(rendered["services"])
    assert ({"secure-init", "secure-grant"} <= set(rendered["services"])) == ("secure" in name)


def test_the_local_file_puts_every_container_on_the_host_network_and_nothing_on_a_bridge():
    """A bridge network would put containers on private-range addresses, which this machine must not reach."""
    rendered = compose_config(*README_COMMANDS["local cluster"])
    for name, svc in rendered["services"].items():
        assert svc.get("network_mode") == "host", name
        assert not svc.get("ports"), name
        assert not svc.get("networks"), name
        for key, value in (svc.get("environment") or {}).items():
            hosts = re.findall(r"(?:://|^|,)([a-z][a-z0-9.-]*):\d+", str(value))
            assert set(hosts) <= {"127.0.0.1", "localhost"}, (name, key, value)
    assert not rendered.get("networks"), rendered.get("networks")


def test_the_local_file_changes_only_images_networking_and_addresses():
    allowed = {"image", "network_mode", "ports", "environment", "command", "volumes", "healthcheck", "profiles"}
    assert set(LOCAL) == set(SERVICES), "every service must be on the host network"
    for name, svc in LOCAL.items():
        assert set(svc) <= allowed, (name, set(svc) - allowed)


def _version(image: str) -> str:
    return image.rsplit(":", 1)[1].removeprefix("v")


def test_each_stand_in_is_the_official_images_version():
    standins = {name: svc["image"] for name, svc in LOCAL.items() if "image" in svc}
    assert set(standins) == {"kafka", "kafka-2", "kafka-3", "kafka-init", "influxdb", "prometheus", "s3"}
    script = (ROOT / "scripts" / "docker" / "standins.sh").read_text()
    for name, image in standins.items():
        official = SERVICES[name]["image"]
        folder = image.removeprefix("healthpipe-standin/").split(":")[0]
        assert image.startswith("healthpipe-standin/") and folder in official, (image, official)
        assert _version(image) == _version(official), (name, image, official)
        assert (ROOT / "deploy" / "standins" / folder / "Dockerfile").exists(), folder
        assert f"build {folder} " in script, folder


def test_the_local_prometheus_config_is_the_same_jobs_on_loopback():
    """prometheus.local.yml = prometheus.yml with 127.0.0.1 for the service names, less the consumers' DNS job
    (their replicas have no status port on the host network)."""
    main = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())
    local = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.local.yml").read_text())
    assert local["global"] == main["global"] and local["rule_files"] == main["rule_files"]
    def on_loopback(static: dict) -> dict:
        return {**static, "targets": [re.sub(r"^[a-z-]+:", "127.0.0.1:", t) for t in static["targets"]]}

    expected = [{**job, "static_configs": [on_loopback(c) for c in job["static_configs"]]}
                for job in main["scrape_configs"] if "static_configs" in job]
    assert local["scrape_configs"] == expected
    assert LOCAL["consumer"]["environment"]["HEALTHPIPE_CONSUMER__METRICS_PORT"] == "0"


def test_images_match_the_native_stack_versions():
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{stack.KAFKA_VERSION}"
    assert SERVICES["influxdb"]["image"] == f"influxdb:{stack.INFLUXDB_VERSION}"


def test_topics_created_by_kafka_init_match_topic_specs():
    script = SERVICES["kafka-init"]["command"][0]
    for spec in topic_specs(HealthpipeConfig()):
        match = re.search(rf"--topic {re.escape(spec.name)} --partitions (\d+)", script)
        assert match, f"kafka-init does not create {spec.name}"
        assert int(match.group(1)) == spec.partitions
        for key, value in spec.config.items():
            if key in ("retention.ms", "cleanup.policy", "unclean.leader.election.enable"):
                assert f"{key}={value}" in script
    assert "min.insync.replicas=${KAFKA_MIN_INSYNC_REPLICAS:-1}" in script
    assert "--replication-factor $$rf" in script and "rf=${KAFKA_REPLICATION_FACTOR:-1}" in script


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_the_cluster_profile_is_three_voters_with_rf_3_and_min_isr_2():
    from healthpipe.common.kafka import min_insync_replicas

    env = _env_file(ROOT / "config" / "compose-cluster.env")
    assert env["KAFKA_QUORUM_VOTERS"] == "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    assert env["KAFKA_REPLICATION_FACTOR"] == "3"
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == str(min_insync_replicas(3))
    assert env["KAFKA_BOOTSTRAP"] == "kafka:9092,kafka-2:9092,kafka-3:9092"
    assert env["KAFKA_LOCAL_BOOTSTRAP"] == ",".join(f"127.0.0.1:{p}" for p in stack.PORTS.kafka)
    assert env["KAFKA_LOCAL_QUORUM_VOTERS"] == ",".join(
        f"{n}@127.0.0.1:{p}" for n, p in enumerate(stack.PORTS.kafka_controller, 1))
    for node, name in ((2, "kafka-2"), (3, "kafka-3")):
        svc = SERVICES[name]
        assert svc["profiles"] == ["cluster"] and svc["environment"]["NODE_ID"] == node
        assert svc["environment"]["CLUSTER_ID"] == SERVICES["kafka"]["environment"]["CLUSTER_ID"]
        port = stack.PORTS.kafka[node - 1]
        assert LOCAL[name]["environment"]["ADVERTISED_LISTENERS"] == f"CLIENT://127.0.0.1:{port}"
    rendered = compose_config(*README_COMMANDS["cluster"])["services"]
    assert rendered["consumer"]["environment"]["HEALTHPIPE_KAFKA__REPLICATION_FACTOR"] == "3"
    assert rendered["kafka-3"]["environment"]["REPLICATION_FACTOR"] == "3"


def test_kafka_starts_the_same_way_in_the_official_image_and_the_stand_in():
    """An explicit start (config/kafka/start.sh), not apache/kafka's KAFKA_*-to-properties entrypoint: every
    variable the script reads is set on every node, and the stand-in ships the scripts it calls."""
    script = (ROOT / "config" / "kafka" / "start.sh").read_text()
    needed = set(re.findall(r"\$([A-Z_]+)", script))
    for name in ("kafka", "kafka-2", "kafka-3"):
        svc = SERVICES[name]
        assert svc["command"] == ["/bin/bash", "/etc/healthpipe/kafka/start.sh"], name
        assert "./config/kafka:/etc/healthpipe/kafka:ro" in svc["volumes"], name
        env = {**SERVICES["kafka"]["environment"], **svc["environment"]}
        assert needed <= set(env), needed - set(env)
        assert not [k for k in env if k.startswith("KAFKA_") and k != "KAFKA_HEAP_OPTS"], name
    for called in set(re.findall(r"/opt/kafka/bin/([\w-]+\.sh)", script + json.dumps(SERVICES))):
        assert (ROOT / "deploy" / "standins" / "kafka" / "bin" / called).exists(), called


def test_influxdb_is_set_up_through_its_api_before_anything_uses_it():
    """No DOCKER_INFLUXDB_INIT_* (the official image's entrypoint only): the one-shot influxdb-init runs
    `healthpipe influxdb-setup` with the config's org, bucket and token; whoever writes or reads waits for it."""
    assert not any(k.startswith("DOCKER_INFLUXDB_INIT") for k in SERVICES["influxdb"].get("environment", {}))
    assert SERVICES["influxdb-init"]["command"] == ["influxdb-setup"]
    assert SERVICES["influxdb-init"]["depends_on"]["influxdb"]["condition"] == "service_healthy"
    for name in ("consumer", "verify", "tiers-init"):
        assert SERVICES[name]["depends_on"]["influxdb-init"]["condition"] == "service_completed_successfully", name


def _config_key_exists(var: str) -> bool:
    path = var.removeprefix("HEALTHPIPE_").lower().split("__")
    model = HealthpipeConfig
    for part in path:
        fields = model.model_fields
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def test_every_healthpipe_env_var_names_a_real_config_key():
    for name in HEALTHPIPE_SERVICES:
        for var in [*SERVICES[name].get("environment", {}), *LOCAL[name].get("environment", {})]:
            if var.startswith("HEALTHPIPE_") and var != "HEALTHPIPE_CONFIG":
                assert _config_key_exists(var), f"{name}: {var} is not a config key"


def test_ports_agree_with_config_and_prometheus():
    cfg = HealthpipeConfig()
    assert SERVICES["producer"]["environment"]["HEALTHPIPE_PRODUCER__METRICS_PORT"] == str(cfg.producer.metrics_port)
    assert SERVICES["consumer"]["environment"]["HEALTHPIPE_CONSUMER__METRICS_PORT"] == str(cfg.consumer.metrics_port)
    prom = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["test-app"]["static_configs"][0]["targets"] == [f"demo-app:{stack.PORTS.demo_app}"]
    assert jobs["healthpipe-producer"]["static_configs"][0]["targets"] == [f"producer:{cfg.producer.metrics_port}"]
    assert jobs["healthpipe-consumer"]["dns_sd_configs"][0]["port"] == cfg.consumer.metrics_port
    assert "127.0.0.1:9090:9090" in SERVICES["prometheus"]["ports"]
    assert "127.0.0.1:8086:8086" in SERVICES["influxdb"]["ports"]


def test_consumers_scale():
    consumer = SERVICES["consumer"]
    assert consumer["deploy"]["replicas"] == 2
    assert "container_name" not in consumer and "ports" not in consumer


def test_the_native_stack_renders_the_same_prometheus_config():
    """One prometheus.yml: the native stack rewrites docker-compose's hosts to 127.0.0.1, nothing else."""
    template = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())
    native = stack.render_prometheus_config(template)
    assert [j["job_name"] for j in native["scrape_configs"]] == [j["job_name"] for j in template["scrape_configs"]]
    targets = {j["job_name"]: [t for s in j["static_configs"] for t in s["targets"]] for j in native["scrape_configs"]}
    assert targets["test-app"] == [f"127.0.0.1:{stack.PORTS.demo_app}"]
    assert targets["healthpipe-producer"] == [f"127.0.0.1:{stack.PORTS.producer_metrics}"]
    assert targets["healthpipe-consumer"] == [f"127.0.0.1:{p}" for p in stack.PORTS.consumer_metrics]
    assert native["global"]["scrape_interval"] == "1s"
    assert native["rule_files"] == [str(ROOT / "config" / "prometheus" / "alerts.yml")]


def test_the_runtime_image_installs_the_wheel_and_copies_no_sources():
    """The runtime stage installs the wheel the build stage made (C fast path included) and copies no package
    sources: a copy in the working directory would come first on sys.path and shadow the installed package."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    build, runtime = dockerfile.split(" AS runtime")[0], dockerfile.split(" AS runtime")[1].split(" AS demo")[0]
    assert "COPY healthpipe " in build and "pip wheel" in build and "_fastline" in build
    # the runtime receives the build stage's venv, where the wheel was installed, and nothing of the checkout
    assert re.search(r"^COPY --from=build /opt/healthpipe /opt/healthpipe$", runtime, flags=re.M)
    assert re.search(r"^USER \d+", runtime, flags=re.M), "the image runs as root"
    assert re.search(r'^ENTRYPOINT \["tini", "--", "healthpipe"\]', runtime, flags=re.M)
    assert re.search(r'^HEALTHCHECK .*CMD \["healthpipe", "probe"\]', runtime, flags=re.M)
    copied = re.findall(r"^COPY (\S+) ", runtime, flags=re.M)
    assert not any((ROOT / c / "__init__.py").exists() for c in copied), copied
    assert SERVICES["producer"]["build"]["target"] == "runtime"  # (through the x-healthpipe anchor)
    assert SERVICES["demo-app"]["build"]["target"] == "demo"


def test_compose_commands_are_healthpipe_commands():
    """The image's entry point is the `healthpipe` command: each service's command must parse as one."""
    parser = build_parser()
    for name in HEALTHPIPE_SERVICES:
        command = SERVICES[name]["command"]
        args = parser.parse_args(command)
        assert args.run is not None, f"{name}: `healthpipe {' '.join(command)}` is not a command"


def test_verify_runs_continuously_scraped_and_alerted_on():
    cfg = HealthpipeConfig()
    assert SERVICES["verify"]["command"][:2] == ["verify", "--every"]
    assert SERVICES["verify"]["environment"]["HEALTHPIPE_VERIFY__METRICS_PORT"] == str(cfg.verify.metrics_port)
    prom = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["healthpipe-verify"]["static_configs"][0]["targets"] == [f"verify:{cfg.verify.metrics_port}"]
    rules = yaml.safe_load((ROOT / "config" / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert "healthpipe_verify_missing_samples > 0" in exprs
    assert any(r.get("for") == "10m" for g in rules["groups"] for r in g["rules"])


def test_alert_rules_are_valid_for_promtool():
    if not shutil.which("promtool"):
        if os.environ.get("CI") == "true":
            pytest.fail("promtool (Debian package prometheus) is missing")
        pytest.skip("promtool not installed")
    result = subprocess.run(["promtool", "check", "rules", str(ROOT / "config" / "prometheus" / "alerts.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _seconds(text: str) -> float:
    return float(text[:-1]) * {"s": 1, "m": 60}[text[-1]]


def test_a_stop_waits_for_the_longest_drain():
    """docker stop gives SIGTERM, then SIGKILL after stop_grace_period: every healthpipe service must get longer
    than one InfluxDB write plus one Kafka commit (the drain), or a stop becomes a kill."""
    cfg = HealthpipeConfig()
    drain = cfg.load.influxdb.timeout_seconds + cfg.consumer.dead_letter_timeout_seconds
    for name, svc in SERVICES.items():
        if svc.get("image", "").startswith("healthpipe") and svc.get("restart") != "no":
            assert _seconds(svc.get("stop_grace_period", "10s")) > drain, name


def test_every_stateful_service_keeps_its_data_in_a_named_volume():
    """Recreating a container must not lose data: each data directory is a named volume, and Kafka is told
    to write there (apache/kafka's default is /tmp/kraft-combined-logs, outside any volume): the log.dirs of
    config/kafka/server.properties."""
    properties = (ROOT / "config" / "kafka" / "server.properties").read_text()
    kafka_dir = re.search(r"^log\.dirs=(.+)$", properties, flags=re.M).group(1)
    influx_command = " ".join(SERVICES["influxdb"]["command"])
    assert "--bolt-path=/var/lib/influxdb2/" in influx_command and "--engine-path=/var/lib/influxdb2/" in influx_command
    data_dirs = {"kafka": kafka_dir, "influxdb": "/var/lib/influxdb2",
                 "prometheus": "/prometheus", "s3": "/data"}
    for name, path in data_dirs.items():
        mounts = {m.split(":")[1]: m.split(":")[0] for m in SERVICES[name]["volumes"] if isinstance(m, str)}
        # the stand-in makes that folder, as the official image does
        dockerfile = (ROOT / "deploy" / "standins" / {"s3": "seaweedfs"}.get(name, name) / "Dockerfile").read_text()
        assert path in dockerfile, (name, path)
        assert mounts.get(path) in COMPOSE["volumes"], f"{name}: {path} is not a named volume ({mounts})"


def test_env_example_names_every_required_variable_and_make_up_fills_it():
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", (ROOT / "docker-compose.yml").read_text()))
    example = (ROOT / ".env.example").read_text()
    assert required == set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.M))
    env = dict(line.split("=", 1) for line in env_from_example(example).splitlines()
               if line and not line.startswith("#"))
    assert set(env) == required and all(v != "generate" and len(v) >= 16 for v in env.values()), env
    assert env != dict(line.split("=", 1) for line in env_from_example(example).splitlines()
                       if line and not line.startswith("#")), "the secrets must be fresh each time"


def test_every_long_running_service_has_a_healthcheck():
    """One-shots (restart: "no") exit when done; everything else must say when it is ready and when it is not."""
    for name, svc in SERVICES.items():
        if svc.get("restart") == "no":
            continue
        check = svc.get("healthcheck")
        image_has_one = svc.get("image", "").startswith("healthpipe")  # the Dockerfile's HEALTHCHECK, too
        assert (check and check.get("test")) or image_has_one, f"{name} has no healthcheck"


# The secure profile: which container may hold which secret. A service's Kafka user, the one credentials volume it
# mounts and its InfluxDB token are the same role's (healthpipe/common/principals.py); secure-init alone holds them
# all, secure-grant the roles' (to grant them) and the operator's.
ROLE_OF = {"producer": "producer", "receive": "producer", "consumer": "consumer", "archive": "archive",
           "verify": "reader", "features": "reader",
           "tiers-init": "tiers", "influxdb-init": "operator", "kafka": "kafka", "kafka-2": "kafka",
           "kafka-3": "kafka", "kafka-init": "kafka", "influxdb": "influxdb"}


def _credential_volumes(svc: dict) -> set[str]:
    return {m["source"] for m in svc.get("volumes", []) if m.get("source", "").startswith("secure-")}


def test_the_secure_profile_gives_each_container_only_its_own_credentials():
    from healthpipe.common.principals import USERNAMES

    rendered = compose_config(*README_COMMANDS["secure cluster"])["services"]
    operator_token = SECRETS["INFLUXDB_TOKEN"]
    for name, svc in rendered.items():
        env = svc.get("environment") or {}
        if name in ROLE_OF:
            assert _credential_volumes(svc) == {f"secure-{ROLE_OF[name]}"}, name
            assert all(m.get("read_only") for m in svc["volumes"] if m.get("source", "").startswith("secure-"))
        elif name == "secure-init":
            assert _credential_volumes(svc) == {f"secure-{v}" for v in ("source", *ROLE_OF.values())}
        elif name == "secure-grant":
            assert _credential_volumes(svc) == {"secure-operator", *(f"secure-{r}" for r in USERNAMES)}
        else:
            assert not _credential_volumes(svc), name
        if ROLE_OF.get(name) in USERNAMES:
            assert env["HEALTHPIPE_KAFKA__SECURITY__USERNAME"] == USERNAMES[ROLE_OF[name]], name
            assert env["HEALTHPIPE_KAFKA__SECURITY__PROTOCOL"] == "SASL_SSL", name
            assert env["HEALTHPIPE_LOAD__INFLUXDB__URL"].startswith("https://"), name
        # Grafana (no stand-in here, not run by the tests) still reads InfluxDB with the operator token: README
        if operator_token in json.dumps(env):
            assert name in {"influxdb-init", "secure-grant", "grafana"}, f"{name} gets the operator token"
        if name in {"kafka", "kafka-2", "kafka-3", "kafka-init"}:
            assert env["SECURITY_PROTOCOL"] == "SASL_SSL", name
    assert rendered["influxdb"]["environment"]["INFLUXD_TLS_CERT"], "InfluxDB must serve https"


def test_without_the_secure_profile_nothing_is_secured_and_every_secret_setting_is_empty():
    rendered = compose_config()["services"]
    assert not {"secure-init", "secure-grant"} & set(rendered)
    for name in ("producer", "consumer", "verify"):
        env = rendered[name]["environment"]
        assert env["HEALTHPIPE_KAFKA__SECURITY__PROTOCOL"] == "PLAINTEXT"
        assert env["HEALTHPIPE_LOAD__INFLUXDB__URL"] == "http://influxdb:8086"
        assert env["HEALTHPIPE_LOAD__INFLUXDB__TOKEN"] == SECRETS["INFLUXDB_TOKEN"]
        for key in ("HEALTHPIPE_KAFKA__SECURITY__CA_FILE", "HEALTHPIPE_KAFKA__SECURITY__PASSWORD_FILE",
                    "HEALTHPIPE_LOAD__INFLUXDB__CA_FILE", "HEALTHPIPE_LOAD__INFLUXDB__TOKEN_FILE"):
            assert env.get(key, "") == "", (name, key)
    assert not rendered["influxdb"]["environment"]["INFLUXD_TLS_CERT"]


def test_secure_init_makes_a_certificate_for_every_name_a_client_dials():
    """Clients verify the host name: every broker's advertised name and InfluxDB's, on a bridge and on loopback."""
    command = SERVICES["secure-init"]["command"]
    hosts = {command[i + 1] for i, word in enumerate(command) if word == "--host"}
    dialled = {"influxdb", "127.0.0.1", "localhost"} | {
        re.match(r"CLIENT://([^:]+):", SERVICES[name]["environment"]["ADVERTISED_LISTENERS"]).group(1)
        for name in ("kafka", "kafka-2", "kafka-3")}
    assert dialled <= hosts, dialled - hosts
