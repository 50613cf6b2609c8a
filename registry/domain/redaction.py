"""Scrubbing credentials out of text bound for logs and status fields.

Pure. Applied to every log record by the handler the composition root installs, and to the
error text a peer's or mirror's status keeps (an error of a remote may quote what it was sent):
the user:password@ of URLs, bearer and authorization values, signatures and token-like
parameters (`X-Amz-Signature=`, `token: ...`), and strings shaped like modelyard (`myd_...`)
or Hugging Face (`hf_...`) tokens. It is a safety net: credentials are never put into
messages on purpose.
"""

from __future__ import annotations

import re

from registry.domain.urls import safe_url

MASK = "***"
_KEYS = r"[\w-]*(?:token|secret|password|passwd|signature|credential|sig|api[_-]?key)"
_PATTERNS = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]+"), rf"\1 {MASK}"),
    (re.compile(r"(?i)(\bauthorization['\"]?\s*[:=]\s*(?-i:b)?['\"]?)[^'\"\r\n,}]+"), rf"\1{MASK}"),
    (re.compile(rf"(?i)\b({_KEYS})(['\"]?\s*[:=]\s*(?-i:b)?['\"]?)[^&'\"\s,;}}]+"), rf"\1\2{MASK}"),
    (re.compile(r"\bmyd_[\w-]{8,}"), f"myd_{MASK}"),
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), f"hf_{MASK}"),
]


def redact(text: str) -> str:
    """`text` with anything that looks like a credential replaced by ***."""
    text = safe_url(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
