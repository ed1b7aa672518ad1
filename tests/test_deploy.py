"""deploy/: every file parses, passes its schema where a validator installs from the registries, and agrees
with the code (commands, settings, ports, the Grafana board)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose
from dockerfile_parse import DockerfileParser

from bandit_router.cli import build_parser
from bandit_router.config import load_config

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
    return [
        (path.name, doc)
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


@pytest.mark.parametrize(("name", "doc"), k8s_documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_kubernetes_manifests_pass_the_api_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


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
    learner_env = {e["name"]: e.get("value") or e["valueFrom"] for e in docs[("Deployment", "bandit-router-learner")]
                   ["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
    assert learner_env["REDIS_URL"] == env["REDIS_URL"] and learner_env["REDIS_PASSWORD"] == secret
    policy = docs[("NetworkPolicy", "bandit-router-redis")]["spec"]
    allowed = policy["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"]
    assert set(allowed) == {"bandit-router", "bandit-router-learner"}
    pdb = docs[("PodDisruptionBudget", "bandit-router")]["spec"]
    assert pdb["minAvailable"] == 1 and pdb["selector"]["matchLabels"] == {"app.kubernetes.io/name": "bandit-router"}
    learner = docs[("Deployment", "bandit-router-learner")]
    assert learner["spec"]["replicas"] == 1 and learner["spec"]["strategy"]["type"] == "Recreate"
    assert learner["spec"]["template"]["spec"]["containers"][0]["args"][0] == "learner"
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
