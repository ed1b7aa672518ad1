"""deploy/: every file parses, passes its schema where a validator installs from the registries, and agrees
with the code (commands, settings, ports, the Grafana board)."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose
from dockerfile_parse import DockerfileParser

from bandit_router.cli import build_parser
from bandit_router.config import load_config
from bandit_router.store.embedded import sentinel_client

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_install_torch_first_and_run_the_cli(name: str) -> None:
    parser = DockerfileParser(fileobj=io.BytesIO((DEPLOY / "docker" / name).read_bytes()))
    instructions = [(i["instruction"], i["value"]) for i in parser.structure]
    assert parser.baseimage == "python:3.11-slim"
    runs = [v for k, v in instructions if k == "RUN"]
    assert "torch==2.13.0" in runs[0] and 'pip install --no-cache-dir ".[server]"' in runs[1]
    if name == "Dockerfile":
        assert "--index-url https://download.pytorch.org/whl/cpu" in runs[0]
    for k, v in instructions:
        if k == "COPY":
            for source in v.split()[:-1]:
                assert (ROOT / source).exists(), source
    assert json.loads(dict(instructions)["ENTRYPOINT"]) == ["bandit-router"]
    assert json.loads(dict(instructions)["CMD"]) == ["serve"]
    assert parser.envs["HF_HUB_OFFLINE"] == "1"
    # The embedding backend's artefacts are built into the image, where the configuration looks for them.
    assert "bandit-router embedding-build" in runs[2]
    assert parser.envs["BANDIT_ROUTER_EMBEDDING_BUILD_DIR"] == "/app/embeddings"
    # Every setting it sets is one the configuration knows.
    load_config(env={k: v for k, v in parser.envs.items() if k.startswith("BANDIT_ROUTER_")})


def test_compose_file_is_valid_and_wires_replicas_to_one_learner() -> None:
    path = DEPLOY / "compose" / "docker-compose.yml"
    raw = yaml.safe_load(path.read_text())
    # The validator reads no YAML merge keys (<<), which Compose resolves: check the merged file.
    PyCompose.from_yaml(yaml.safe_dump({k: v for k, v in raw.items() if not k.startswith("x-")})).validate()
    services = raw["services"]
    assert set(services) == {"redis", "learner", "router-a", "router-b", "prometheus", "grafana"}
    assert services["learner"]["command"] == ["learner"]
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("router-a", "router-b"):
        router = services[name]
        assert router["command"] == ["serve"] and router["command"][0] in commands
        assert router["environment"]["BANDIT_ROUTER_SERVER_LEARNER"] == "false"
        assert router["environment"]["REDIS_URL"] == services["learner"]["environment"]["REDIS_URL"]
        load_config(env={k: v for k, v in router["environment"].items() if k.startswith("BANDIT_ROUTER_")})
    prometheus = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["router-a:8080", "router-b:8080"]
    for volume in services["grafana"]["volumes"]:
        assert (path.parent / volume.split(":")[0]).exists(), volume


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """The base's objects (``kubectl apply -k deploy/k8s``), each named by its file."""
    return [(name, doc) for name, doc in _kustomize(DEPLOY / "k8s") if doc]


def _kustomize(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """What kustomize builds from ``folder``, for the features these files use: ``resources`` (files, and folders
    with a kustomization of their own) and ``patches`` as strategic merges (maps merged key by key, lists of named
    things merged by name, other lists replaced). Not kustomize itself (it installs from no Python registry)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[tuple[str, dict[str, Any]]] = []
    for resource in kustomization["resources"]:
        path = folder / resource
        if path.is_dir():
            docs += _kustomize(path)
        else:
            docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in kustomization.get("patches", []):
        change = yaml.safe_load((folder / patch["path"]).read_text())
        targets = [
            d for _, d in docs if (d["kind"], d["metadata"]["name"]) == (change["kind"], change["metadata"]["name"])
        ]
        assert len(targets) == 1, f"{patch['path']} patches no one object of the base"
        _merge(targets[0], change)
    return docs


# The key that names the items of a list a strategic merge merges item by item (as the Kubernetes API declares it).
_MERGE_KEYS = {"containers": "name", "env": "name", "volumes": "name", "ports": "name", "volumeMounts": "mountPath"}


def _merge(into: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif key in _MERGE_KEYS and isinstance(into.get(key), list):
            named = {item[_MERGE_KEYS[key]]: item for item in into[key]}
            for item in value:
                if item[_MERGE_KEYS[key]] in named:
                    _merge(named[item[_MERGE_KEYS[key]]], item)
                else:
                    into[key].append(item)
        else:
            into[key] = value


def sentinel_documents() -> list[tuple[str, dict[str, Any]]]:
    return _kustomize(DEPLOY / "k8s" / "overlays" / "sentinel")


@pytest.mark.parametrize(
    ("name", "doc"),
    k8s_documents() + [(f"sentinel/{n}", d) for n, d in sentinel_documents()],
    ids=lambda v: v if isinstance(v, str) else v["kind"],
)
def test_kubernetes_manifests_pass_the_api_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_base_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml")


def test_kubernetes_manifests_fit_together() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in k8s_documents()}
    router = docs[("Deployment", "bandit-router")]["spec"]["template"]["spec"]["containers"][0]
    assert router["readinessProbe"]["grpc"]["port"] == 50051
    env = {e["name"]: e.get("value") or e["valueFrom"] for e in router["env"]}
    assert env["BANDIT_ROUTER_SERVER_LEARNER"] == "false"
    # Redis takes a password from the Secret, which the routers and the learner read too; only they may reach it.
    secret = {"secretKeyRef": {"name": "bandit-router-redis", "key": "password"}}
    redis = docs[("StatefulSet", "bandit-router-redis")]["spec"]["template"]["spec"]["containers"][0]
    assert env["REDIS_PASSWORD"] == secret and redis["env"][0]["valueFrom"] == secret
    assert redis["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    learner_env = {e["name"]: e.get("value") or e["valueFrom"] for e in docs[("StatefulSet", "bandit-router-learner")]
                   ["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
    assert learner_env["REDIS_URL"] == env["REDIS_URL"] and learner_env["REDIS_PASSWORD"] == secret
    policy = docs[("NetworkPolicy", "bandit-router-redis")]["spec"]
    allowed = policy["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"]
    assert set(allowed) == {"bandit-router", "bandit-router-learner"}
    pdb = docs[("PodDisruptionBudget", "bandit-router")]["spec"]
    assert pdb["minAvailable"] == 1 and pdb["selector"]["matchLabels"] == {"app.kubernetes.io/name": "bandit-router"}
    # Two learners, one learning at a time (the lease), each probed on the port its configuration names.
    learner = docs[("StatefulSet", "bandit-router-learner")]
    assert learner["spec"]["replicas"] == 2 and learner["spec"]["serviceName"] == "bandit-router-learner"
    assert ("Service", "bandit-router-learner") in docs and ("PodDisruptionBudget", "bandit-router-learner") in docs
    container = learner["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "learner"
    health = load_config(env={k: v for k, v in learner_env.items() if k.startswith("BANDIT_ROUTER_")}).server
    probes_port = int(health.learner_health_listen.rsplit(":", 1)[1])
    assert container["ports"] == [{"name": "probes", "containerPort": probes_port}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # gRPC clients balance over every replica through the headless Service.
    headless = docs[("Service", "bandit-router-headless")]["spec"]
    assert headless["clusterIP"] == "None" and headless["selector"] == {"app.kubernetes.io/name": "bandit-router"}
    hpa = docs[("HorizontalPodAutoscaler", "bandit-router")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "bandit-router"
    redis_url = f"redis://:$(REDIS_PASSWORD)@{docs[('Service', 'bandit-router-redis')]['metadata']['name']}:6379/0"
    assert env["REDIS_URL"] == redis_url
    # The ConfigMap's config.toml is a configuration the router accepts, catalog included.
    config_text = docs[("ConfigMap", "bandit-router-config")]["data"]["config.toml"]
    path = Path(ROOT / "artifacts")
    path.mkdir(exist_ok=True)
    (path / "k8s-config.toml").write_text(config_text)
    config = load_config(str(path / "k8s-config.toml"), env={})
    assert len(config.models) == 8
    assert re.search(r"^\[\[models\]\]", config_text, flags=re.M)


def _mib(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * {"gb": 1000**3, "mb": 1000**2, "Gi": 2**30, "Mi": 2**20}[unit] / 2**20


def test_the_shipped_redis_refuses_writes_when_full_instead_of_evicting_decisions() -> None:
    """A full Redis that evicted would drop pending decisions (and acknowledged rewards) silently; one that refuses
    is an outage the router rides out. Its bound leaves the k8s container room for an AOF rewrite's copy."""
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in k8s_documents()}
    container = docs[("StatefulSet", "bandit-router-redis")]["spec"]["template"]["spec"]["containers"][0]
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())["services"]["redis"]["command"]
    for args in (container["args"], compose):
        settings = dict(zip(args[1::2], args[2::2], strict=False))
        assert settings["--maxmemory-policy"] == "noeviction"
        assert _mib(settings["--maxmemory"]) > 0
    k8s = dict(zip(container["args"][1::2], container["args"][2::2], strict=False))
    assert _mib(k8s["--maxmemory"]) <= 0.6 * _mib(container["resources"]["limits"]["memory"])


def test_the_validators_catch_a_broken_manifest() -> None:
    deployment = next(d for _, d in k8s_documents() if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    with pytest.raises(ValueError, match="restart"):
        PyCompose.from_yaml("services:\n  a:\n    image: x\n    restart: sometimes\n").validate()


def test_the_sentinel_overlay_finds_the_master_through_three_sentinels(tmp_path: Path) -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in sentinel_documents()}
    redis = docs[("StatefulSet", "bandit-router-redis")]["spec"]
    assert redis["replicas"] == 3
    # Every pod has a name the Sentinels announce: the StatefulSet's governing Service is headless.
    nodes = docs[("Service", redis["serviceName"])]["spec"]
    assert nodes["clusterIP"] == "None" and {p["port"] for p in nodes["ports"]} == {6379, 26379}
    containers = {c["name"]: c for c in redis["template"]["spec"]["containers"]}
    assert set(containers) == {"redis", "sentinel"}
    scripts = docs[("ConfigMap", "bandit-router-redis-scripts")]["data"]
    for name, script in scripts.items():
        (tmp_path / name).write_text(script)
        # The shell parses them.
        assert subprocess.run(["sh", "-n", str(tmp_path / name)], capture_output=True).returncode == 0, name
    assert containers["redis"]["args"] == ["/scripts/redis.sh"] and containers["sentinel"]["args"] == [
        "/scripts/sentinel.sh"
    ]
    assert (
        "--maxmemory-policy noeviction" in scripts["redis.sh"]
        and '--requirepass "$REDIS_PASSWORD"' in scripts["redis.sh"]
    )
    monitor = re.search(r"sentinel monitor (\S+) \S+ 6379 (\d+)", scripts["sentinel.sh"])
    assert monitor is not None and int(monitor.group(2)) == redis["replicas"] // 2 + 1
    sentinels = docs[("Service", "bandit-router-redis-sentinel")]["spec"]
    # The routers and the learners ask those Sentinels for that master, and the routers wait for a replica.
    for kind, name in (("Deployment", "bandit-router"), ("StatefulSet", "bandit-router-learner")):
        env = {
            e["name"]: e.get("value") for e in docs[(kind, name)]["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        url = env["REDIS_URL"].replace("$(REDIS_PASSWORD)", "secret")
        client = sentinel_client(url)
        pool = client.connection_pool
        assert pool.service_name == monitor.group(1)  # type: ignore[attr-defined]
        assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs["host"] == (  # type: ignore[attr-defined]
            "bandit-router-redis-sentinel"
        )
        assert sentinels["ports"][0]["port"] == 26379 and url.split("@")[1].startswith(
            "bandit-router-redis-sentinel:26379/"
        )
        load_config(env={k: v for k, v in env.items() if k.startswith("BANDIT_ROUTER_") and v is not None})
        if kind == "Deployment":
            assert env["BANDIT_ROUTER_REDIS_WAIT_REPLICAS"] == "1"
    policy = docs[("NetworkPolicy", "bandit-router-redis-sentinel")]["spec"]["ingress"]
    assert {p["port"] for rule in policy for p in rule["ports"]} == {6379, 26379}
