"""modelyard node: content-addressed storage, metadata and the HuggingFace-compatible API."""

from __future__ import annotations

__version__ = "0.1.0"
