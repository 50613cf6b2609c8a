"""The replica's side of replay alone, in-process: a home's feed pages (built once by
bench/_replay.py's `build_log` and kept in bench/.work/replay-pages-N.json) decoded and applied by
`ReplicationService.apply` into a fresh node on SQLite or PostgreSQL, no HTTP.

Run: `.venv/bin/python bench/replay_apply.py 20000 --database sqlite|postgres [--profile]`.
Prints wall and CPU entries/s (CPU: this process only; the machine is shared, so CPU time is the
steadier figure), and with --profile the 30 costliest functions.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _replay import build_log, database

from registry.domain.access import CONSOLE
from registry.domain.changes import ChangeEntry
from registry.domain.replication import FeedPosition
from registry.runtime import Runtime
from registry.settings import Settings
from registry.wire import FeedOut
from sync.planner import plan
from tests.e2e.cluster import NodeProcess

HERE = Path(__file__).parent


def pages(entries: int) -> list[str]:
    """The home's feed from serial 0 in pages of 5000, as served (built on first use)."""
    cached = HERE / ".work" / f"replay-pages-{entries}.json"
    if not cached.exists():
        cached.parent.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=HERE) as tmp:
            home = NodeProcess(Path(tmp), "a").start()
            try:
                head, since, found = build_log(home, entries), 0, []
                with home.client() as http:
                    while since < head:
                        params = {"since": since, "limit": 5000}
                        response = http.get("/v1/sync/changes", params=params, timeout=120)
                        found.append(response.text)
                        since = response.json()["last_serial"]
            finally:
                home.stop()
        cached.write_text(json.dumps(found))
    return list(json.loads(cached.read_text()))


def apply_all(runtime: Runtime, texts: list[str]) -> int:
    peer = runtime.peers.add(CONSOLE, "http://127.0.0.1:9", None, "lazy")
    total = 0
    for text in texts:
        feed = FeedOut.model_validate_json(text)
        entries = [ChangeEntry(**dict(e)) for e in feed.entries]
        position = FeedPosition(feed.last_serial, feed.last_chain, feed.head)
        runtime.replication.apply(peer.id, entries, position, plan)
        total += len(entries)
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("entries", type=int)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    texts = pages(args.entries)
    with tempfile.TemporaryDirectory(dir=HERE) as tmp, database(args.database) as env:
        url = env.get("MODELYARD_DATABASE_URL")
        settings = Settings(data_dir=Path(tmp))
        runtime = Runtime.open(settings.model_copy(update={"database_url": url} if url else {}))
        profile = cProfile.Profile()
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            if args.profile:
                profile.enable()
            total = apply_all(runtime, texts)
            profile.disable()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            runtime.db.dispose()
    if args.profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    print(
        f"{args.database}: {total} entries applied in-process, {total / wall:.0f} entries/s "
        f"wall, {total / cpu:.0f} entries per CPU-second"
    )


if __name__ == "__main__":
    main()
