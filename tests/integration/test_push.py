"""`modelyard push` to three targets at once (a node, an S3 bucket, a Hub), as a user runs it:
all succeed; with one down the other two still complete, and the exit code says it failed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download

from mirror.s3_target import S3Bucket
from tests.conftest import RunningNode

WEIGHTS = os.urandom(2 * 1024 * 1024 + 1)


def make_folder(root: Path) -> Path:
    folder = root / "my-lora"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text("---\nkind: lora\n---\nPushed everywhere.\n")
    (folder / "my-lora.safetensors").write_bytes(WEIGHTS)
    (folder / "sub" / "config.json").write_text('{"rank": 8}')
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # never pushed
    return folder


def push(
    folder: Path, repo: str, targets: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "registry", "push", str(folder), repo]
    for target in targets:
        command += ["--to", target]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def files_on_hub(endpoint: str, repo: str) -> dict[str, bytes]:
    api = HfApi(endpoint=endpoint)
    names = [f for f in api.list_repo_files(repo) if f != ".gitattributes"]
    return {n: Path(hf_hub_download(repo, n, endpoint=endpoint)).read_bytes() for n in names}


def test_push_to_three_targets_then_with_one_down(
    start_node: Callable[..., RunningNode], s3_bucket: str, tmp_path: Path
) -> None:
    hub, target = start_node("hub"), start_node("target")
    folder = make_folder(tmp_path)
    expected = {
        "README.md": (folder / "README.md").read_bytes(),
        "my-lora.safetensors": WEIGHTS,
        "sub/config.json": b'{"rank": 8}',
    }
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.admin_token,
        "HF_HUB_DISABLE_XET": "1",
        "MODELYARD_TOKEN": target.admin_token,
    }
    bucket = f"s3://{s3_bucket}/pushed"
    targets = [target.url, bucket, "hf:admin/lora-on-hub"]
    done = push(folder, "admin/my-lora", targets, env)
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert [(line[0], line[1]) for line in lines] == [("ok", t) for t in targets]
    assert files_on_hub(target.url, "admin/my-lora") == expected
    assert files_on_hub(hub.url, "admin/lora-on-hub") == expected
    manifest = S3Bucket(bucket).resolve("model", "admin/my-lora", "main")
    assert {f.path for f in manifest.files} == set(expected)
    assert manifest.commit == lines[1][2]

    target.server.stop()
    (folder / "sub" / "config.json").write_text('{"rank": 16}')
    again = push(folder, "admin/my-lora", targets, env)
    assert again.returncode != 0
    results = {line.split("\t")[1]: line.split("\t")[0] for line in again.stdout.splitlines()}
    assert results == {target.url: "FAILED", bucket: "ok", "hf:admin/lora-on-hub": "ok"}
    assert target.url in again.stdout and "1 of 3 targets failed" in again.stderr
    assert files_on_hub(hub.url, "admin/lora-on-hub")["sub/config.json"] == b'{"rank": 16}'
    updated = S3Bucket(bucket).resolve("model", "admin/my-lora", "main")
    assert updated.commit != manifest.commit


def test_push_refuses_bad_targets_and_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    bad = push(tmp_path / "empty", "admin/x", ["ftp://nowhere"], dict(os.environ))
    assert bad.returncode == 2 and "holds no files" in bad.stderr
    folder = make_folder(tmp_path)
    wrong = push(folder, "admin/x", ["ftp://nowhere"], dict(os.environ))
    assert wrong.returncode != 0 and "Unknown target" in wrong.stdout
