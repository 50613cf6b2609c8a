"""Error codes: every error class lives in registry/domain/errors.py and is in ERRORS_BY_CODE
under its own unique code, one HTTP status per family, and each code decodes back to the
class the server raised."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

import httpx
import pytest

import mirror
import registry
import sync
from registry.api.errors import registry_error_response, status_of
from registry.client import raise_for_error, streaming
from registry.client.client import RETRY_STATUS, TransientError
from registry.client.streaming import StreamFailedError
from registry.domain import errors as e
from registry.service.imagemeta import _Broken as ContainerBroken
from registry.service.scrub import Stopped
from sync.blobstream import WriteFailedError

# The documented family -> status table (style.md section 4, hf-hub-protocol.md).
FAMILY_STATUS: list[tuple[type[e.RegistryError], int]] = [
    (e.NotFoundError, 404),
    (e.ConflictError, 409),
    (e.PeerError, 409),
    (e.PreconditionError, 412),
    (e.InvalidError, 400),
    (e.UnprocessableError, 422),
    (e.TooLargeError, 413),
    (e.UnsupportedMediaTypeError, 415),
    (e.RangeNotSatisfiableError, 416),
    (e.UnauthorizedError, 401),
    (e.ForbiddenError, 403),
    (e.StorageError, 503),
    (e.InsufficientStorageError, 507),
    (e.UpstreamError, 502),
]
CLASSES = list(e.ERRORS_BY_CODE.values())
# Exceptions that may live outside errors.py: internal signals no user sees as such.
INTERNAL: set[type[BaseException]] = {
    TransientError,  # the client's "retry this" (tenacity's predicate); no code on the wire
    StreamFailedError,  # carries a failed download's good prefix to the resume logic
    streaming._Stopped,  # the stream ended: a fetcher waiting for a slot gives up
    WriteFailedError,  # the blob store refused a fetched slot: its cause is re-raised
    Stopped,  # a scrub asked to stop, raised between two reads and caught by the run
    ContainerBroken,  # an image cut short: read_generation turns it into a problem or an error
}
# `__main__` runs the CLI when imported; alembic runs `env` inside its own context.
NOT_IMPORTABLE = {"registry.__main__", "registry.metadata.migrations.env"}
E = TypeVar("E", bound=BaseException)


def defined_in_our_packages(base: type[E]) -> set[type[E]]:
    """`base` and its subclasses in registry, sync and mirror, once every module of them is
    imported (so the answer does not depend on what other tests happened to import)."""
    for package in (registry, sync, mirror):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module.name not in NOT_IMPORTABLE:
                importlib.import_module(module.name)
    found: set[type[E]] = set()
    pending = [base]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.__module__.partition(".")[0] in {"registry", "sync", "mirror"}:
            found.add(cls)
    return found


def documented_status(cls: type[e.RegistryError]) -> int:
    return next((status for family, status in FAMILY_STATUS if issubclass(cls, family)), 500)


def test_errors_by_code_holds_every_registry_error_under_its_own_code() -> None:
    defined = defined_in_our_packages(e.RegistryError)
    codes = [cls.code for cls in defined]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)
    assert set(e.ERRORS_BY_CODE.values()) == defined
    for code, cls in e.ERRORS_BY_CODE.items():
        assert cls.code == code, cls


def test_error_classes_are_defined_in_the_errors_module_and_named_error() -> None:
    defined = defined_in_our_packages(BaseException)
    assert INTERNAL <= defined  # each exemption still exists (a stale one would hide nothing)
    assert {cls for cls in defined - INTERNAL if cls.__module__ != e.__name__} == set()
    assert all(cls.__name__.endswith("Error") for cls in CLASSES)


def test_error_classes_each_belong_to_at_most_one_family() -> None:
    for cls in CLASSES:
        families = [f for f, _ in FAMILY_STATUS if issubclass(cls, f)]
        assert len(families) <= 1, (cls, families)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.code)
def test_status_of_maps_each_family_to_its_documented_status(cls: type[e.RegistryError]) -> None:
    assert status_of(cls("x")) == documented_status(cls)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.code)
def test_raise_for_error_decodes_the_class_the_server_raised(cls: type[e.RegistryError]) -> None:
    sent = registry_error_response(cls("something went wrong", detail={"k": "v"}))
    assert sent.headers["x-error-code"] == sent.headers["x-registry-error"] == cls.code
    response = httpx.Response(
        sent.status_code,
        headers=list(sent.headers.items()),
        content=bytes(sent.body),
        request=httpx.Request("GET", "http://node.test/v1/x"),
    )
    if sent.status_code in RETRY_STATUS:
        with pytest.raises(TransientError):  # retried by the client, never decoded
            raise_for_error(response)
        return
    with pytest.raises(e.RegistryError) as caught:
        raise_for_error(response)
    assert type(caught.value) is cls
    assert caught.value.message == "something went wrong"
    assert caught.value.detail["request_id"] == sent.headers["x-request-id"]


def test_raise_for_error_falls_back_to_the_base_class_for_unknown_codes() -> None:
    response = httpx.Response(
        418,
        headers={"x-error-code": "NoSuchCode"},
        json={"error": "teapot"},
        request=httpx.Request("GET", "http://node.test/"),
    )
    with pytest.raises(e.RegistryError) as caught:
        raise_for_error(response)
    assert type(caught.value) is e.RegistryError and caught.value.message == "teapot"
