"""Fixtures for multi-process tests: a factory of node processes, all stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import NodeProcess


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def make(name: str, **kwargs: object) -> NodeProcess:
        # kwargs are NodeProcess's keywords (env, port), forwarded untyped by the factory.
        node = NodeProcess(tmp_path, name, **kwargs)  # type: ignore[arg-type]
        started.append(node)
        return node.start()

    yield make
    for node in started:
        node.kill()
