"""Fixtures for integration tests: tokens of other users on the running node."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import RunningNode


@pytest.fixture
def make_token(node: RunningNode) -> Callable[..., str]:
    def make(user: str, *, write: bool = True) -> str:
        return node.runtime.auth.create_token(user, write=write)

    return make
