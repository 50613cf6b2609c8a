"""deploy/ checked by validators: the compose-spec schema, Kubernetes' schemas (kubernetes-validate,
offline), `systemd-analyze verify`, `promtool check config`, and our own Settings for every
MODELYARD_* variable the files set. Each validator is also shown a broken file it must reject.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from registry.settings import Settings, load_settings
from tests.tools import require

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
UNIT = DEPLOY / "systemd" / "modelyard.service"


def compose_errors(path: Path, project_dir: Path | None = None) -> list[str]:
    """The compose-spec schema's complaints (check-jsonschema's bundled copy), then ours.

    Relative paths are looked up in `project_dir` (the file's folder by default), as with
    `docker compose --project-directory`.
    """
    checked = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
        + [str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if checked.returncode != 0:
        return [checked.stdout + checked.stderr]
    return _compose_reference_errors(yaml.safe_load(path.read_text()), project_dir or path.parent)


def _compose_reference_errors(compose: dict[str, Any], base: Path) -> list[str]:
    """What `docker compose config` would refuse and a schema cannot see: dangling names."""
    services = compose["services"]
    errors = []
    for name, service in services.items():
        needs = service.get("depends_on", [])
        errors += [f"{name}: depends on unknown {dep}" for dep in needs if dep not in services]
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                if not (base / source).exists():
                    errors.append(f"{name}: mounts missing {source}")
            elif source not in compose.get("volumes", {}):
                errors.append(f"{name}: undeclared volume {source}")
    return errors


def k8s_errors(documents: list[dict[str, Any]]) -> list[str]:
    """Schema errors (strict: unknown fields too), then selectors and references that miss."""
    errors = []
    for doc in documents:
        try:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc.get('kind')}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(exc.message)
    named = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    pods = [doc["spec"]["template"] for doc in documents if doc["kind"] == "Deployment"]
    labels = [pod["metadata"]["labels"] for pod in pods]
    for doc in documents:
        selector = doc.get("spec", {}).get("selector")
        selector = selector.get("matchLabels", selector) if selector else None
        if selector and not any(selector.items() <= pod.items() for pod in labels):
            errors.append(f"{doc['kind']} {doc['metadata']['name']} selects no pods")
    for pod in pods:
        for container in pod["spec"]["containers"]:
            for source in container.get("envFrom", []):
                for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if field in source and (kind, source[field]["name"]) not in named:
                        errors.append(f"{container['name']} reads missing {kind}")
    return errors


def systemd_errors(unit: Path, tmp_path: Path) -> str:
    """`systemd-analyze verify` output: it exits 0 on unknown keys or bad values but says so.

    ExecStart's program is pointed at this environment's `modelyard` first: verify checks
    that it exists, and the unit names where it is installed on a server.
    """
    program = Path(sys.executable).parent / "modelyard"
    assert program.exists(), program
    copy = tmp_path / unit.name
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={program}", unit.read_text(), flags=re.M)
    copy.write_text(text)
    checked = subprocess.run(
        [require("systemd-analyze"), "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return (checked.stdout + checked.stderr).strip() or (
        f"exit status {checked.returncode}" if checked.returncode else ""
    )


def promtool_errors(config: Path) -> str:
    """`promtool check config` (which checks the rule files it names too); "" if it passes."""
    checked = subprocess.run(
        [require("promtool"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return "" if checked.returncode == 0 else checked.stdout + checked.stderr


def settings_errors(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """MODELYARD_* variables that are no setting, or that Settings refuses."""
    ours = {key: value for key, value in env.items() if key.startswith("MODELYARD_")}
    errors = [
        f"{key} is no setting"
        for key in ours
        if key.removeprefix("MODELYARD_").split("__")[0].lower() not in Settings.model_fields
    ]
    for key, value in ours.items():
        monkeypatch.setenv(key, value)
    try:
        load_settings()
    except ValueError as exc:
        errors.append(str(exc))
    return errors


def _env_file(path: Path) -> dict[str, str]:
    """The variables of an EnvironmentFile, the commented-out examples included."""
    pairs = re.findall(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), flags=re.M)
    return {key: value.strip("'") for key, value in pairs}


def _k8s_env() -> dict[str, str]:
    documents = [doc for path in K8S for doc in yaml.safe_load_all(path.read_text())]
    kinds = ("ConfigMap", "Secret")
    found = [doc.get("data") or doc.get("stringData") for doc in documents if doc["kind"] in kinds]
    return {key: str(value) for data in found for key, value in data.items()}


def _compose_env(service: str) -> dict[str, str]:
    env = yaml.safe_load(COMPOSE.read_text())["services"][service]["environment"]
    return {key: str(value) for key, value in env.items()}


def test_compose_file_matches_the_compose_spec() -> None:
    assert compose_errors(COMPOSE) == []


def test_compose_validation_rejects_an_unknown_key_and_a_dangling_name(tmp_path: Path) -> None:
    text = COMPOSE.read_text()
    (tmp_path / "typo.yml").write_text(text.replace("restart:", "restrat:", 1))
    (tmp_path / "dangling.yml").write_text(text.replace("minio-data:/data", "mino-data:/data"))
    assert compose_errors(tmp_path / "typo.yml") != []
    assert compose_errors(tmp_path / "dangling.yml", DEPLOY) == [
        "minio: undeclared volume mino-data"
    ]


def test_compose_b_and_c_follow_a_and_each_other_with_their_admin_tokens() -> None:
    def peers(node: str) -> dict[str, str]:
        configured = json.loads(_compose_env(node).get("MODELYARD_SYNC__PEERS", "[]"))
        return {peer["url"]: peer["token"] for peer in configured}

    def admin(node: str) -> str:
        return _compose_env(node)["MODELYARD_ADMIN_TOKEN"]

    assert peers("a") == {}
    assert peers("b") == {"http://a:8000": admin("a"), "http://c:8000": admin("c")}
    assert peers("c") == {"http://a:8000": admin("a"), "http://b:8000": admin("b")}


def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    documents = [doc for path in K8S for doc in yaml.safe_load_all(path.read_text())]
    assert {doc["kind"] for doc in documents} >= {"Namespace", "Deployment", "Service"}
    assert k8s_errors(documents) == []


def test_k8s_probes_tell_ready_from_alive_on_routes_the_node_serves() -> None:
    """Readiness asks whether the node can take writes (503 on a full or read-only disk, or
    with no database: the Service routes around it), liveness only whether it answers (a
    restart fixes neither); both are routes of the app, on the container's port."""
    documents = [doc for path in K8S for doc in yaml.safe_load_all(path.read_text())]
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ready, alive = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], alive["path"]) == ("/v1/health/ready", "/v1/health/live")
    ports = {port["name"] for port in container["ports"]}
    assert ready["port"] in ports and alive["port"] in ports
    routes = json.loads((DEPLOY.parent / "openapi" / "openapi.json").read_text())["paths"]
    assert ready["path"] in routes and alive["path"] in routes
    assert "/v1/health/live" in (DEPLOY / "Dockerfile").read_text()  # HEALTHCHECK: alive


def test_k8s_validation_rejects_a_wrong_type_and_a_selector_that_misses() -> None:
    documents = [doc for path in K8S for doc in yaml.safe_load_all(path.read_text())]
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    deployment["spec"]["replicas"] = "two"
    deployment["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    errors = k8s_errors(documents)
    assert len(errors) == 4, errors
    assert "'two' is not of type 'integer'" in errors[0]
    assert errors[1:] == [
        f"{kind} modelyard selects no pods"
        for kind in ("Deployment", "Service", "PodDisruptionBudget")
    ]


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert systemd_errors(UNIT, tmp_path) == ""


def test_systemd_verify_rejects_a_bad_value_and_an_unknown_key(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / UNIT.name
    broken.parent.mkdir()
    text = UNIT.read_text().replace("[Service]\n", "[Service]\nRestart=sometimes\nProtectSytem=1\n")
    broken.write_text(text)
    errors = systemd_errors(broken, tmp_path)
    assert "restart specifier, ignoring: sometimes" in errors, errors
    assert "Unknown key 'ProtectSytem'" in errors, errors


def test_compose_prometheus_config_passes_promtool() -> None:
    assert promtool_errors(DEPLOY / "prometheus" / "compose.yml") == ""


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    config = (DEPLOY / "prometheus" / "compose.yml").read_text()
    (tmp_path / "alerts.yml").write_text((DEPLOY / "prometheus" / "alerts.yml").read_text())
    (tmp_path / "prometheus.yml").write_text(config.replace("15s", "soon", 1))
    assert "soon" in promtool_errors(tmp_path / "prometheus.yml")


@pytest.mark.parametrize(
    "env",
    [
        pytest.param(lambda: _compose_env("a"), id="compose-a"),
        pytest.param(lambda: _compose_env("b"), id="compose-b"),
        pytest.param(lambda: _compose_env("c"), id="compose-c"),
        pytest.param(_k8s_env, id="k8s"),
        pytest.param(lambda: _env_file(DEPLOY / "systemd" / "env.example"), id="systemd"),
    ],
)
def test_deploy_env_variables_are_valid_settings(
    env: Callable[[], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings_errors(env(), monkeypatch) == []


def test_settings_check_rejects_a_misspelt_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = settings_errors({"MODELYARD_NODEID": "a", "MODELYARD_SYNC__PEER": "[]"}, monkeypatch)
    assert errors[0] == "MODELYARD_NODEID is no setting"
    assert "sync.peer" in errors[1]
