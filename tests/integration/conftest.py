"""Fixtures for integration tests: tokens of other users on the running node."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from registry.metadata.db import Database
from registry.service.auth import AuthService
from tests.conftest import RunningNode


@pytest.fixture
def make_token(node: RunningNode) -> Iterator[Callable[..., str]]:
    db = Database(node.settings.effective_database_url)

    def make(user: str, *, write: bool = True) -> str:
        return AuthService(db).create_token(user, write=write)

    yield make
    db.dispose()
