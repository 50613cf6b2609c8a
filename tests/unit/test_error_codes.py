"""Error codes: unique per class, one HTTP status per family, decoded back to the same class."""

from __future__ import annotations

import httpx
import pytest

from registry.api.errors import registry_error_response, status_of
from registry.client import raise_for_error
from registry.client.client import RETRY_STATUS, TransientError
from registry.domain import errors as e

# The documented family -> status table (style.md section 4, hf-hub-protocol.md).
FAMILY_STATUS: list[tuple[type[e.RegistryError], int]] = [
    (e.NotFoundError, 404),
    (e.ConflictError, 409),
    (e.PeerError, 409),
    (e.PreconditionError, 412),
    (e.InvalidError, 400),
    (e.UnprocessableError, 422),
    (e.TooLargeError, 413),
    (e.RangeNotSatisfiableError, 416),
    (e.UnauthorizedError, 401),
    (e.ForbiddenError, 403),
    (e.StorageError, 503),
    (e.UpstreamError, 502),
]
CLASSES = e.all_error_classes()


def documented_status(cls: type[e.RegistryError]) -> int:
    return next((status for family, status in FAMILY_STATUS if issubclass(cls, family)), 500)


def test_error_classes_have_unique_codes() -> None:
    codes = [cls.code for cls in CLASSES]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)


def test_error_classes_are_all_found_and_named_error() -> None:
    assert {e.BlobNotFoundError, e.DigestMismatchError, e.ParentMismatchError} <= set(CLASSES)
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
