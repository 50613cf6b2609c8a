"""`modelyard push` to two nodes that take different tokens, in one command: each target's
token comes from the credentials file by URL (none in argv), the output names the commit each
node made, and a target without a credential is refused up front, naming its URL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HfApi

from tests.conftest import RunningNode


def push(
    folder: Path, targets: list[str], env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "registry", "push", str(folder), "alice/tiny", *extra]
    for target in targets:
        command += ["--to", target]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "HF_"))}
    return {**env, **extra}


def write_credentials(path: Path, entries: dict[str, str], mode: int = 0o600) -> Path:
    path.write_text("".join(f'["{url}"]\ntoken = "{token}"\n\n' for url, token in entries.items()))
    path.chmod(mode)
    return path


def folder_in(root: Path) -> Path:
    folder = root / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text('{"rank": 4}')
    (folder / "w.bin").write_bytes(b"\x00\x01" * 1000)
    return folder


def test_push_to_two_nodes_with_their_own_tokens(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    a, b = start_node("a"), start_node("b")
    token_a = a.runtime.auth.create_token("alice", write=True)
    token_b = b.runtime.auth.create_token("alice", write=True)
    assert token_a != token_b
    credentials = write_credentials(
        tmp_path / "credentials.toml",
        {a.url: token_a, f"{b.url}/": token_b},
    )
    folder = folder_in(tmp_path)

    done = push(folder, [a.url, b.url], clean_env(MODELYARD_CREDENTIALS=str(credentials)))
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    heads = [
        HfApi(endpoint=n.url, token=t).model_info("alice/tiny").sha
        for n, t in ((a, token_a), (b, token_b))
    ]
    assert lines == [["ok", a.url, heads[0]], ["ok", b.url, heads[1]]]
    assert token_a not in done.stdout + done.stderr and token_b not in done.stdout + done.stderr
    assert "warning" not in done.stderr
    files = HfApi(endpoint=b.url, token=token_b).list_repo_files("alice/tiny")
    assert sorted(files) == ["config.json", "w.bin"]  # the tree is the folder's

    # --credentials wins over the environment; a file others may read draws a warning.
    write_credentials(credentials, {a.url: token_a, b.url: token_b}, mode=0o644)
    (folder / "config.json").write_text('{"rank": 8}')
    again = push(
        folder,
        [a.url, b.url],
        clean_env(MODELYARD_CREDENTIALS=str(tmp_path / "nowhere.toml")),
        "--credentials",
        str(credentials),
    )
    assert again.returncode == 0, again.stderr
    assert f"warning: {credentials} is readable by group or others" in again.stderr
    new_head = HfApi(endpoint=a.url, token=token_a).model_info("alice/tiny").sha
    assert again.stdout.splitlines()[0] == f"ok\t{a.url}\t{new_head}"
    assert new_head != heads[0]


def test_push_without_a_credential_names_the_url(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    a, b = start_node("a"), start_node("b")
    token_a = a.runtime.auth.create_token("alice", write=True)
    credentials = write_credentials(tmp_path / "credentials.toml", {a.url: token_a})
    folder = folder_in(tmp_path)

    refused = push(folder, [a.url, b.url], clean_env(MODELYARD_CREDENTIALS=str(credentials)))
    assert refused.returncode == 2
    assert f"no credential for {b.url}" in refused.stderr
    assert str(credentials) in refused.stderr and token_a not in refused.stderr
    assert refused.stdout == ""  # nothing was pushed, to either node
    with a.client(token_a) as http:
        assert http.get("/api/models/alice/tiny").status_code == 404

    # A token the node does not know is that target's failure, the other target still done.
    with_wrong = write_credentials(
        tmp_path / "wrong.toml", {a.url: token_a, b.url: "not-a-token-of-b"}
    )
    failed = push(folder, [a.url, b.url], clean_env(MODELYARD_CREDENTIALS=str(with_wrong)))
    assert failed.returncode == 6
    results = [line.split("\t")[:2] for line in failed.stdout.splitlines()]
    assert results == [["ok", a.url], ["FAILED", b.url]]
    assert "Unauthorized" in failed.stdout and "not-a-token-of-b" not in failed.stdout

    missing = push(folder, [a.url], clean_env(), "--credentials", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "none.toml does not exist" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text(f'["{a.url}"]\nuser = "alice"\n')
    bad = push(folder, [a.url], clean_env(MODELYARD_CREDENTIALS=str(broken)))
    assert bad.returncode == 2 and "needs a token" in bad.stderr
