"""`modelyard gc --delete --grace 0` run again and again as its own process beside a serving
node while the Hub client deletes repos and commits the same bytes to new ones: a commit either
succeeds with every byte downloadable or is refused with MissingObject; nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from tests.e2e.cluster import TOKEN, NodeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MIN_ROUNDS, MAX_ROUNDS = 10, 60  # rounds go on until gc has run a few times meanwhile
GC_RUNS = 3


def run_gc(node: NodeProcess) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "registry", "gc", "--delete", "--grace", "0", "--json"]
        + ["--data-dir", str(node.data_dir)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    return report


def assert_downloads(node: NodeProcess, repo: str, files: dict[str, bytes], cache: Path) -> None:
    for path, data in files.items():
        local = hf_hub_download(repo, path, endpoint=node.url, token=TOKEN, cache_dir=cache)
        assert Path(local).read_bytes() == data, (repo, path)


def test_gc_beside_a_serving_node_never_leaves_a_commit_without_its_bytes(
    spawn: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    node = spawn("a")
    api = HfApi(endpoint=node.url, token=TOKEN)
    notes = [f"note {i}\n".encode() * 50 for i in range(3)]
    weights = [os.urandom(300_000) for _ in range(3)]
    reports: list[dict[str, object]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def collect() -> None:
        try:
            while not stop.is_set() and len(reports) < 2 * MAX_ROUNDS:
                reports.append(run_gc(node))
        except BaseException as exc:  # reported by the test's thread below
            failures.append(exc)

    collector = threading.Thread(target=collect)
    collector.start()
    refused, live, good = 0, None, None
    try:
        for i in range(MAX_ROUNDS):
            if i >= MIN_ROUNDS and (len(reports) >= GC_RUNS or failures):
                break
            if live is not None:  # its blobs are garbage now: the next round stores them again
                api.delete_repo(live)
                good = None
            live = f"admin/round{i}"
            api.create_repo(live)
            files = {
                "notes.txt": notes[i % 3],
                "w.bin": weights[i % 3],
                "own.bin": os.urandom(1000),  # garbage once this repo is deleted
            }
            ops = [CommitOperationAdd(path, data) for path, data in files.items()]
            try:
                api.create_commit(live, ops, commit_message=f"round {i}")
            except HfHubHTTPError as exc:  # gc took a fresh upload before its commit
                assert exc.response.headers.get("x-registry-error") == "MissingObject", exc
                refused += 1
                continue
            assert_downloads(node, live, files, tmp_path / f"cache{i}")
            good = (live, files)
    finally:
        stop.set()
        collector.join(timeout=180)
    assert not failures, failures
    assert len(reports) >= GC_RUNS and refused < i
    assert sum(int(str(r["blobs"])) for r in reports + [run_gc(node)]) > 0
    if good is not None:  # the last round committed: still whole after a last gc
        assert_downloads(node, *good, tmp_path / "final")
