"""RegistryClient: the native API of a node over HTTP (httpx + tenacity). No server imports."""

from __future__ import annotations

from registry.client.client import RegistryClient, RetryPolicy, raise_for_error

__all__ = ["RegistryClient", "RetryPolicy", "raise_for_error"]
