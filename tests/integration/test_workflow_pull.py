"""`modelyard workflow pull`: a workflow's models into ComfyUI's layout from whichever source
has them, verified; a plan with --dry-run; missing models named and a non-zero exit; never a
byte outside DIR/models."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import blake3
import pytest
from huggingface_hub import HfApi

from registry.domain.digest import Digest
from tests.conftest import RunningNode
from tests.faultproxy import FaultProxy
from tests.integration.test_mirrors import FAST, add_mirror, wait_pushed
from tests.integration.test_workflow_resolve import comfyui_png, safetensors

CHECKPOINT = safetensors(os.urandom(2 * 1024 * 1024 + 3))
LORA = safetensors(os.urandom(700_000))
EVIL = b"cos\nsystem\n(S'echo pwned'\ntR."  # a pickle calling os.system: unsafe

WORKFLOW = {
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "SDXL\\base.safetensors"},
    },
    "10": {
        "class_type": "LoraLoader",
        "inputs": {"lora_name": "style.safetensors", "strength_model": 0.8, "model": ["4", 0]},
    },
    "11": {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"lora_name": "style.safetensors", "strength_model": 0.5},
    },
}


@pytest.fixture
def home(start_node: Callable[..., RunningNode], s3_bucket: str) -> RunningNode:
    """Node A: the checkpoint, and a LoRA whose bytes now live only in an S3 mirror (pushed
    there, then the mirror dropped from A and the blob removed from A's store)."""
    node = start_node("home", mirror=FAST)
    url = f"s3://{s3_bucket}/models"
    assert add_mirror(node, name="bucket", kind="s3", url=url, repos="admin/lora").status_code
    api = HfApi(endpoint=node.url, token=node.admin_token)
    for repo, path, data in (
        ("admin/sdxl", "SDXL/base.safetensors", CHECKPOINT),
        ("admin/lora", "style.safetensors", LORA),
        ("admin/embeddings", "evil.pt", EVIL),
        ("admin/workflows", "flows/portrait.json", json.dumps(WORKFLOW).encode()),
    ):
        api.create_repo(repo, exist_ok=True)
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo)
    wait_pushed(node, {"bucket"})
    with node.client(node.admin_token) as http:
        assert http.delete("/v1/mirrors/bucket").status_code == 200
    node.runtime.blobs.delete(Digest(blake3.blake3(LORA).hexdigest()))
    with node.client() as http:
        assert http.get(f"/v1/blobs/{blake3.blake3(LORA).hexdigest()}").status_code >= 400
    node.runtime.scans.run_once(limit=100)
    return node


def workflow_pull(
    home: RunningNode | str, spec: str | Path, comfyui: Path, *extra: str, s3: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with `home` (a node, or the URL to reach it by) as the first source."""
    url = home if isinstance(home, str) else home.url
    command = [str(Path(sys.executable).parent / "modelyard"), "workflow", "pull", str(spec)]
    command += ["--comfyui", str(comfyui), "--source", url]
    command += ["--source", s3] if s3 else []
    command += [*extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def write_workflow(path: Path, workflow: object) -> Path:
    path.write_text(json.dumps(workflow))
    return path


def table(output: str) -> dict[str, list[str]]:
    """The printed table's rows by `folder/filename`."""
    rows = [line.split() for line in output.splitlines() if line.strip()]
    assert rows[0] == ["folder", "filename", "status", "source", "size"], output
    return {f"{r[0]}/{r[1]}": r[2:] for r in rows[1:] if len(r) >= 4}


def test_workflow_pull_takes_each_model_from_the_source_that_has_it(
    home: RunningNode, s3_bucket: str, tmp_path: Path
) -> None:
    comfy = tmp_path / "ComfyUI"
    flow = write_workflow(tmp_path / "flow.json", WORKFLOW)
    s3 = f"s3://{s3_bucket}/models"

    pulled = workflow_pull(home, flow, comfy, s3=s3)

    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert (comfy / "models/checkpoints/SDXL/base.safetensors").read_bytes() == CHECKPOINT
    assert (comfy / "models/loras/style.safetensors").read_bytes() == LORA
    rows = table(pulled.stdout)
    assert list(rows) == ["checkpoints/SDXL/base.safetensors", "loras/style.safetensors"]
    assert rows["checkpoints/SDXL/base.safetensors"][:2] == ["downloaded", home.url]
    assert rows["loras/style.safetensors"][0] == "downloaded"
    assert rows["loras/style.safetensors"][1].startswith(f"s3://{s3_bucket}")
    # Nothing but the models (no partial files left behind, nothing beside DIR/models).
    assert sorted(p.name for p in comfy.iterdir()) == ["models"]
    assert sorted(p.name for p in (comfy / "models").iterdir()) == ["checkpoints", "loras"]

    again = workflow_pull(home, flow, comfy, s3=s3)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {row[0] for row in table(again.stdout).values()} == {"present"}


def test_workflow_pull_goes_on_from_the_mirror_once_the_node_is_down(
    start_node: Callable[..., RunningNode], s3_bucket: str, tmp_path: Path
) -> None:
    """A holds both models and resolves the workflow; the LoRA's repo is also in an S3 mirror.
    A goes down (a proxy in front of it resets every connection and refuses new ones) when the
    LoRA's bytes are first asked of it, after the checkpoint came from it: the LoRA then comes
    from the mirror, verified."""
    a = start_node("a", mirror=FAST)
    s3 = f"s3://{s3_bucket}/models"
    assert add_mirror(a, name="bucket", kind="s3", url=s3, repos="admin/lora").status_code
    api = HfApi(endpoint=a.url, token=a.admin_token)
    for repo, path, data in (
        ("admin/sdxl", "SDXL/base.safetensors", CHECKPOINT),
        ("admin/lora", "style.safetensors", LORA),
    ):
        api.create_repo(repo)
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo)
    wait_pushed(a, {"bucket"})
    proxy = FaultProxy(urlsplit(a.url).port or 80)
    proxy.down_on(blake3.blake3(LORA).hexdigest().encode())
    try:
        flow = write_workflow(tmp_path / "flow.json", WORKFLOW)
        pulled = workflow_pull(proxy.url, flow, tmp_path / "ComfyUI", s3=s3)
    finally:
        proxy.close()

    assert pulled.returncode == 0, pulled.stdout + pulled.stderr[-3000:]
    rows = table(pulled.stdout)
    assert rows["checkpoints/SDXL/base.safetensors"][:2] == ["downloaded", proxy.url]
    assert rows["loras/style.safetensors"][0] == "downloaded"
    assert rows["loras/style.safetensors"][1].startswith(s3)
    models = tmp_path / "ComfyUI/models"
    assert (models / "checkpoints/SDXL/base.safetensors").read_bytes() == CHECKPOINT
    assert (models / "loras/style.safetensors").read_bytes() == LORA
    with pytest.raises(OSError):  # A was down for the LoRA, as far as the CLI could tell
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()


def test_workflow_pull_replaces_a_wrong_file_and_keeps_a_right_one(
    home: RunningNode, tmp_path: Path
) -> None:
    comfy = tmp_path / "ComfyUI"
    checkpoint = comfy / "models/checkpoints/SDXL/base.safetensors"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(CHECKPOINT)
    before = checkpoint.stat().st_mtime_ns
    wrong = comfy / "models/checkpoints/other.safetensors"
    wrong.write_bytes(b"x" * len(CHECKPOINT))
    flow = {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "SDXL/base.safetensors"},
        },
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
    }

    pulled = workflow_pull(home, write_workflow(tmp_path / "f.json", flow), comfy)

    assert pulled.returncode == 0, pulled.stderr[-3000:]
    rows = table(pulled.stdout)
    assert rows["checkpoints/SDXL/base.safetensors"][0] == "present"
    assert checkpoint.stat().st_mtime_ns == before
    assert rows["checkpoints/base.safetensors"][0] == "downloaded"
    assert (comfy / "models/checkpoints/base.safetensors").read_bytes() == CHECKPOINT


def test_workflow_pull_dry_run_writes_nothing(
    home: RunningNode, s3_bucket: str, tmp_path: Path
) -> None:
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    flow = write_workflow(tmp_path / "flow.json", WORKFLOW)

    planned = workflow_pull(home, flow, comfy, "--dry-run", s3=f"s3://{s3_bucket}/models")

    assert planned.returncode == 0, planned.stderr[-3000:]
    assert list(comfy.iterdir()) == []
    rows = table(planned.stdout)
    assert rows["checkpoints/SDXL/base.safetensors"][:2] == [
        "planned",
        "admin/sdxl:SDXL/base.safetensors",
    ]
    assert rows["loras/style.safetensors"][:2] == ["planned", "admin/lora:style.safetensors"]


def test_workflow_pull_names_missing_models_and_exits_non_zero(
    home: RunningNode, tmp_path: Path
) -> None:
    comfy = tmp_path / "ComfyUI"
    flow = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x_nowhere.pth"}},
    }

    pulled = workflow_pull(home, write_workflow(tmp_path / "f.json", flow), comfy)

    assert pulled.returncode == 1
    rows = table(pulled.stdout)
    assert rows["upscale_models/4x_nowhere.pth"][0] == "missing"
    assert rows["checkpoints/base.safetensors"][0] == "downloaded"
    assert "upscale_models/4x_nowhere.pth (missing)" in pulled.stderr


def test_workflow_pull_refuse_unsafe_skips_flagged_files(home: RunningNode, tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    flow = {"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat, embedding:evil"}}}
    spec = write_workflow(tmp_path / "f.json", flow)

    refused = workflow_pull(home, spec, comfy, "--refuse-unsafe")

    assert refused.returncode == 1
    assert table(refused.stdout)["embeddings/evil"][0] == "refused"
    assert not comfy.exists()
    pulled = workflow_pull(home, spec, comfy)  # without the flag, the file is taken
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert (comfy / "models/embeddings/evil.pt").read_bytes() == EVIL


def test_workflow_pull_reads_a_workflow_from_a_repo_on_the_node(
    home: RunningNode, tmp_path: Path
) -> None:
    comfy = tmp_path / "ComfyUI"

    pulled = workflow_pull(home, "admin/workflows@main:flows/portrait.json", comfy, "--dry-run")

    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert set(table(pulled.stdout)) == {
        "checkpoints/SDXL/base.safetensors",
        "loras/style.safetensors",
    }
    assert not comfy.exists()


def test_workflow_pull_reads_the_workflow_a_comfyui_png_embeds(
    home: RunningNode, tmp_path: Path
) -> None:
    made = tmp_path / "made.png"
    made.write_bytes(comfyui_png({"prompt": json.dumps(WORKFLOW)}))
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()

    planned = workflow_pull(home, made, comfy, "--dry-run")

    assert planned.returncode == 0, planned.stderr[-3000:]
    assert set(table(planned.stdout)) == {
        "checkpoints/SDXL/base.safetensors",
        "loras/style.safetensors",
    }
    assert list(comfy.iterdir()) == []
    plain = tmp_path / "plain.png"
    plain.write_bytes(comfyui_png({"parameters": "a cat\nSteps: 20, Sampler: Euler, Seed: 1"}))
    refused = workflow_pull(home, plain, comfy)
    assert refused.returncode == 2  # bad input, as a name that escapes its folder
    assert "error: BadGenerationData:" in refused.stderr
    assert "holds no ComfyUI workflow" in refused.stderr
    absent = workflow_pull(home, tmp_path / "absent.json", tmp_path / "ComfyUI")
    assert absent.returncode == 2
    assert "neither a workflow file nor REPO[@REV]:PATH" in absent.stderr


def test_workflow_pull_needs_a_live_node_to_resolve(s3_bucket: str, tmp_path: Path) -> None:
    flow = write_workflow(tmp_path / "flow.json", WORKFLOW)
    command = [str(Path(sys.executable).parent / "modelyard"), "workflow", "pull", str(flow)]
    command += ["--comfyui", str(tmp_path / "ComfyUI"), "--source", f"s3://{s3_bucket}/models"]
    command += ["--source", "http://127.0.0.1:9"]  # nothing listens there

    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    assert refused.returncode == 6
    assert "No node among the live sources" in refused.stderr
    assert not (tmp_path / "ComfyUI").exists()


def test_workflow_pull_never_writes_outside_models(home: RunningNode, tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    evil = {
        "1": {"class_type": "LoraLoader", "inputs": {"lora_name": "../../../escape.safetensors"}}
    }

    refused = workflow_pull(home, write_workflow(tmp_path / "evil.json", evil), comfy)

    assert refused.returncode == 2  # the node refuses the name: WorkflowInvalid
    assert "WorkflowInvalid" in refused.stderr and "'..'" in refused.stderr
    # A folder inside DIR/models that is a link out of it is refused too: the resolved path
    # is checked, not just the name.
    outside = tmp_path / "outside"
    outside.mkdir()
    (comfy / "models").mkdir(parents=True)
    (comfy / "models/checkpoints").symlink_to(outside, target_is_directory=True)
    flow = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}}
    }

    linked = workflow_pull(home, write_workflow(tmp_path / "f.json", flow), comfy)

    assert linked.returncode == 1
    assert table(linked.stdout)["checkpoints/base.safetensors"][0] == "refused"
    assert list(outside.iterdir()) == []
    assert not any(p.name.startswith("escape") for p in tmp_path.rglob("*"))
