"""Per-origin hash chains of the change log: what makes a history recognisable.

Each entry a node writes commits to the previous entry that node wrote (its `chain` is the
BLAKE3 of the previous one's chain and of the entry itself), and travels with the entry to
every peer unchanged. Two logs holding an entry of the same origin and origin serial with
different chains hold two histories of that origin: the origin was restored from a backup
(or reset) and wrote on from an earlier point. The format is fixed: nodes compare chains they
computed in different versions.
"""

from __future__ import annotations

import json

import blake3

GENESIS = ""  # the chain "before" an origin's first entry


def link(
    prev: str,
    origin: str,
    origin_serial: int,
    kind: str,
    repo: str,
    private: bool,
    body_text: str,
) -> str:
    """The chain of an entry whose origin's previous entry has chain `prev`; `body_text` is
    the body as stored (`json.dumps(body, sort_keys=True)`)."""
    head = json.dumps([prev, origin, origin_serial, kind, repo, private])
    return blake3.blake3(f"{head}\n{body_text}".encode()).hexdigest()
