"""Global dedup through the node's CAS: a stock client with an empty cache (a fresh HF_HOME
and Xet cache, as on a new machine) re-uploads an edited copy of a stored file and sends only
what changed, because the node answers its dedup queries (`GET /cas/v1/chunks/...`) with
the xorbs of the files that hold the chunk asked about.

Bytes are counted on the wire at a loopback proxy in front of the node: the client is given
the proxy's URL as its endpoint, and the node's `casUrl` and fetch URLs, built from the Host
header, lead back through it. bench/xet.py measures the same at 1 GiB.
"""

from __future__ import annotations

import array
import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from registry.domain.xet.chunking import chunk_boundaries
from registry.domain.xet.hashes import chunk_hash
from registry.domain.xet.shard import is_dedup_eligible, parse_shard
from tests.byteproxy import ByteCountingProxy
from tests.conftest import RunningNode
from tests.integration.test_xet import stock_client

MIB = 1 << 20
# Two xorbs (a xorb holds at most 64 MiB): the 1 KiB edit falls in the first, the client asks
# only about the first chunk, and the answer must name the second too.
RANDOM_SIZE = 80 * MIB
SAFETENSORS_SIZE = 48 * MIB  # twelve float32 tensors of 4 MiB
TENSOR = 4 * MIB
EDIT = 1024
MAX_SHARE = 0.05  # of the file's bytes, that re-uploading an edited copy may send
NAME = "model.safetensors"
# The pure-Python chunker runs at about 10 MB/s: chunk only the start of a file.
HEAD_BYTES = 2 * MIB


@dataclass(frozen=True)
class Upload:
    sent: int  # bytes the client sent to the node (headers and bodies), counted at the proxy
    commit: str
    xorbs_posted: list[str]  # their hashes
    dedup_queries: int


@pytest.fixture
def proxy(node: RunningNode) -> Iterator[ByteCountingProxy]:
    counting = ByteCountingProxy(node.port)
    yield counting
    counting.close()


def create_repos(node: RunningNode, *names: str) -> None:
    with node.client(node.admin_token) as http:
        for name in names:
            answer = http.post("/api/repos/create", json={"name": name})
            assert answer.status_code == 200, answer.text


def upload(
    tmp_path: Path,
    node: RunningNode,
    proxy: ByteCountingProxy,
    path: Path,
    repo: str,
    home: str,
    client_settings: dict[str, str],
) -> Upload:
    """Upload `path` as the repo's NAME with the stock client from the fresh home `home`,
    through the proxy, with these hf_xet settings (env variables) changed; what went over the
    wire."""
    seen = len(node.log.requests)
    proxy.reset()
    out = stock_client(
        tmp_path,
        replace(node, url=proxy.url),
        f"""
        import os
        os.environ.update({client_settings!r})
        info = api.upload_file(path_or_fileobj={str(path)!r}, path_in_repo={NAME!r},
                               repo_id={repo!r})
        print(info.oid)
        """,
        home=home,
    )
    requests = node.log.requests[seen:]
    return Upload(
        sent=proxy.traffic().sent,
        commit=out.stdout.strip().splitlines()[-1],
        xorbs_posted=[
            p.rpartition("/")[2] for m, p, _ in requests if m == "POST" and "/v1/xorbs/" in p
        ],
        dedup_queries=sum(1 for m, p, _ in requests if m == "GET" and "/v1/chunks/" in p),
    )


def assert_small(edit: Upload, size: int) -> None:
    share = edit.sent / size
    assert share <= MAX_SHARE, (
        f"re-uploading the edited copy sent {edit.sent} bytes, {share:.1%} of the file "
        f"({len(edit.xorbs_posted)} xorbs posted, {edit.dedup_queries} dedup queries)"
    )


def assert_downloads(
    tmp_path: Path,
    node: RunningNode,
    proxy: ByteCountingProxy,
    expected: dict[tuple[str, str], bytes],
) -> None:
    """Each (repo, commit)'s NAME reads back byte for byte: through Xet with the stock client
    (fresh home) and with a plain GET of /resolve."""
    wanted = [[repo, commit] for repo, commit in expected]
    out = stock_client(
        tmp_path,
        replace(node, url=proxy.url),
        f"""
        from huggingface_hub import hf_hub_download
        paths = [hf_hub_download(repo, {NAME!r}, revision=commit, endpoint=endpoint,
                                 token=token)
                 for repo, commit in {wanted!r}]
        print(json.dumps(paths))
        """,
        home="home-download",
    )
    paths = json.loads(out.stdout.strip().splitlines()[-1])
    for path, ((repo, commit), data) in zip(paths, expected.items(), strict=True):
        assert Path(path).read_bytes() == data, f"{repo}@{commit} through Xet"
    with node.client(node.admin_token) as http:
        for (repo, commit), data in expected.items():
            answer = http.get(f"/{repo}/resolve/{commit}/{NAME}")
            assert answer.status_code == 200 and answer.content == data, f"{repo}@{commit}"


def dedup_round(
    tmp_path: Path,
    node: RunningNode,
    proxy: ByteCountingProxy,
    v1: bytes,
    v2: bytes,
    client_settings: dict[str, str] | None = None,
) -> Upload:
    """v1 from one fresh home; v2 from others into the same repo and into a second repo of
    the same user; each v2 upload sends at most MAX_SHARE of the file; all read back. The
    upload of v1."""
    settings = client_settings or {}
    create_repos(node, "dedup", "dedup-copy")
    (tmp_path / "v1").write_bytes(v1)
    (tmp_path / "v2").write_bytes(v2)
    v1_path, v2_path = tmp_path / "v1", tmp_path / "v2"
    first = upload(tmp_path, node, proxy, v1_path, "admin/dedup", "home-v1", settings)
    assert first.sent >= 0.9 * len(v1)  # the proxy sees the first upload (compressed a bit)
    same_repo = upload(tmp_path, node, proxy, v2_path, "admin/dedup", "home-v2", settings)
    assert_small(same_repo, len(v2))
    other_repo = upload(tmp_path, node, proxy, v2_path, "admin/dedup-copy", "home-v2b", settings)
    assert_small(other_repo, len(v2))
    expected = {
        ("admin/dedup", first.commit): v1,
        ("admin/dedup", same_repo.commit): v2,
        ("admin/dedup-copy", other_repo.commit): v2,
    }
    assert_downloads(tmp_path, node, proxy, expected)
    return first


def dedup_answer(node: RunningNode, token: str, repo: str, chunk: bytes) -> set[str] | None:
    """The xorbs the node's dedup answer for this chunk names (None: 404), to a CAS token
    for `repo` got with the Hub token `token`."""
    with node.client(token) as http:
        cas_token = http.get(f"/api/models/{repo}/xet-read-token/main").json()["accessToken"]
    with node.client(cas_token) as cas:
        answer = cas.get(f"/cas/v1/chunks/default/{chunk_hash(chunk).hex}")
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    return {x.xorb.hex for x in parse_shard(answer.content).xorbs}


def first_chunk(data: bytes) -> bytes:
    return data[: chunk_boundaries(data[: 256 * 1024])[0]]


def test_edited_copy_from_an_empty_cache_sends_only_the_change(
    node: RunningNode, proxy: ByteCountingProxy, tmp_path: Path
) -> None:
    # Not all random: hf_xet cuts a xorb at 64 MiB of chunk data, which is 8 bytes a chunk more
    # once serialized, and this node refuses a xorb of over 64 MiB (413): about one full xorb
    # of incompressible data in eight fails. 4 MiB of counting integers in the first xorb
    # compress by far more than those headers.
    counting = array.array("Q", range(4 * MIB // 8)).tobytes()
    v1 = os.urandom(8 * MIB) + counting + os.urandom(RANDOM_SIZE - 8 * MIB - len(counting))
    middle = RANDOM_SIZE // 2
    v2 = v1[:middle] + os.urandom(EDIT) + v1[middle + EDIT :]
    first = dedup_round(tmp_path, node, proxy, v1, v2)
    # What made it small: asked about the file's first chunk, the node named every xorb of
    # the file, not only the first (the client asks about no chunk of the second here, unless
    # one happens to be eligible).
    assert len(first.xorbs_posted) >= 2
    answer = dedup_answer(node, node.admin_token, "admin/dedup", first_chunk(v1))
    assert answer is not None and set(first.xorbs_posted) <= answer


def test_dedup_answer_names_only_xorbs_of_files_the_user_may_read(
    node: RunningNode,
    proxy: ByteCountingProxy,
    tmp_path: Path,
    make_token: Callable[..., str],
) -> None:
    """A xorb of a public file that a private file also names: the answer lists the private
    file's other xorbs (its edit) to the admin, and to another user only the public file's."""
    with node.client(node.admin_token) as http:
        assert http.post("/api/repos/create", json={"name": "pub"}).status_code == 200
        created = http.post("/api/repos/create", json={"name": "priv", "private": True})
        assert created.status_code == 200
    v1 = os.urandom(8 * MIB)
    v2 = v1[: 4 * MIB] + os.urandom(EDIT) + v1[4 * MIB + EDIT :]
    (tmp_path / "v1").write_bytes(v1)
    (tmp_path / "v2").write_bytes(v2)
    public = upload(tmp_path, node, proxy, tmp_path / "v1", "admin/pub", "home-pub", {})
    private = upload(tmp_path, node, proxy, tmp_path / "v2", "admin/priv", "home-priv", {})
    edit = set(private.xorbs_posted)
    assert public.xorbs_posted and edit and not edit & set(public.xorbs_posted)
    assert_small(private, len(v2))
    chunk = first_chunk(v1)
    assert dedup_answer(node, node.admin_token, "admin/pub", chunk) == {
        *public.xorbs_posted,
        *edit,
    }
    bob = make_token("bob")
    with node.client(bob) as http:
        assert http.post("/api/repos/create", json={"name": "own"}).status_code == 200
    assert dedup_answer(node, bob, "bob/own", chunk) == set(public.xorbs_posted)


def safetensors(metadata: dict[str, str], tensors: dict[str, tuple[list[int], bytes]]) -> bytes:
    """A .safetensors file: an 8-byte little-endian header length, the JSON header (padded
    with spaces to 8 bytes, `__metadata__` first, as the safetensors library writes it), then
    the tensors' bytes in order."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for name, (shape, data) in tensors.items():
        header[name] = {
            "dtype": "F32",
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(data for _, data in tensors.values())


def tensor_chunks(file: bytes) -> set[tuple[int, int]]:
    """The chunks of the start of a .safetensors file that lie in its tensors, as [start, end)
    offsets into the tensors (the last chunk cut, at HEAD_BYTES, left out)."""
    data_start = 8 + struct.unpack("<Q", file[:8])[0]
    ends = [0, *chunk_boundaries(file[:HEAD_BYTES])[:-1]]
    return {
        (a - data_start, b - data_start)
        for a, b in zip(ends, ends[1:], strict=False)
        if a >= data_start
    }


def plant_eligible_chunk(v1: bytes, v2: bytes, weights: bytearray) -> bytes:
    """Make a chunk near the start of the tensors (`weights`) that both files cut alike
    eligible for global dedup, without moving any chunk boundary; its bytes.

    The client asks the node about the first chunk of a file and about chunks whose hash is
    eligible (1 in 1024). A changed header changes the first chunk (and the chunks cut until
    both files agree on a boundary again), so what an empty cache dedups depends on where the
    first eligible chunk falls: a checkpoint of many GiB has some, a 48 MiB test file has one
    by chance about half the time. Planting one makes the test measure the node's answers, not
    luck. A chunk's first 8192 - 64 bytes never enter the rolling hash that places boundaries,
    so a counter there changes only its hash.
    """
    start, end = min(tensor_chunks(v1) & tensor_chunks(v2))
    for counter in range(1 << 20):  # about 1024 tries expected
        weights[start : start + 8] = counter.to_bytes(8, "little")
        chunk = bytes(weights[start:end])
        if is_dedup_eligible(chunk_hash(chunk)):
            return chunk
    raise AssertionError("no eligible chunk found")


def head_chunks(file: bytes) -> set[bytes]:
    ends = [0, *chunk_boundaries(file[:HEAD_BYTES])[:-1]]
    return {file[a:b] for a, b in zip(ends, ends[1:], strict=False)}


def test_safetensors_with_new_metadata_from_an_empty_cache_sends_only_the_header(
    node: RunningNode, proxy: ByteCountingProxy, tmp_path: Path
) -> None:
    """The header grows, so the first chunk and the place of every tensor change; the node
    knows the tensors' chunks. The client must ask about one of them: hf_xet 1.8.0 asks about
    a chunk only if it is eligible, and not within 256 chunks (16 MiB) of its last question,
    which was about the new first chunk. At 48 MiB that would leave the first 16 MiB (a third
    of the file) undeduped whatever the node answers, so this test sets that spacing to 0
    (HF_XET_MIN_SPACING_BETWEEN_GLOBAL_DEDUP_QUERIES, a client setting) and plants an eligible
    chunk at the start of the tensors. bench/xet.py measures the stock spacing at 1 GiB."""
    blob = bytearray(os.urandom(SAFETENSORS_SIZE))

    def build(metadata: dict[str, str]) -> bytes:
        tensors = {
            f"layers.{i}.weight": ([1024, 1024], bytes(blob[i * TENSOR : (i + 1) * TENSOR]))
            for i in range(SAFETENSORS_SIZE // TENSOR)
        }
        return safetensors(metadata, tensors)

    old = {"format": "pt"}
    new = {"format": "pt", "description": "fine-tuned on more data; " * 20}
    planted = plant_eligible_chunk(build(old), build(new), blob)
    v1, v2 = build(old), build(new)
    header_end = 8 + struct.unpack("<Q", v1[:8])[0]
    assert len(v2) > len(v1) and v1[header_end:] == v2[len(v2) - len(v1) + header_end :]
    assert planted in head_chunks(v1) and planted in head_chunks(v2)
    spacing = {"HF_XET_MIN_SPACING_BETWEEN_GLOBAL_DEDUP_QUERIES": "0"}
    dedup_round(tmp_path, node, proxy, v1, v2, spacing)


def miss_answers(node: RunningNode, repo: str, route: str, asked: int) -> list[set[str] | None]:
    """What one CAS token (from the token route `route`) for `repo` is answered, asked about
    `asked` chunks stored nowhere: the xorbs each answer names (None: 404)."""
    with node.client(node.admin_token) as http:
        answer = http.get(f"/api/models/{repo}/{route}/main")
        assert answer.status_code == 200, answer.text
    found: list[set[str] | None] = []
    with node.client(answer.json()["accessToken"]) as cas:
        for _ in range(asked):
            reply = cas.get(f"/cas/v1/chunks/default/{chunk_hash(os.urandom(64)).hex}")
            assert reply.status_code in (200, 404), reply.text
            shard = parse_shard(reply.content) if reply.status_code == 200 else None
            found.append(None if shard is None else {x.xorb.hex for x in shard.xorbs})
    return found


def test_new_version_in_the_same_repo_sends_only_its_header_at_the_client_defaults(
    node: RunningNode, proxy: ByteCountingProxy, tmp_path: Path
) -> None:
    """A new safetensors header changes the file's first chunk, and the client (default
    settings, empty cache) asks next about an eligible chunk 256 chunks on at the earliest: at
    48 MiB, a third of the file or more would go again. The node answers an upload token's
    first question it cannot answer with the latest files of the token's repo, so the new
    version of a file there sends little more than its header."""
    blob = os.urandom(SAFETENSORS_SIZE)
    tensors = {
        f"layers.{i}.weight": ([1024, 1024], blob[i * TENSOR : (i + 1) * TENSOR])
        for i in range(SAFETENSORS_SIZE // TENSOR)
    }
    v1 = safetensors({"format": "pt"}, tensors)
    v2 = safetensors({"format": "pt", "description": "fine-tuned on more data; " * 20}, tensors)
    create_repos(node, "hinted")
    (tmp_path / "v1").write_bytes(v1)
    (tmp_path / "v2").write_bytes(v2)
    first = upload(tmp_path, node, proxy, tmp_path / "v1", "admin/hinted", "home-v1", {})
    second = upload(tmp_path, node, proxy, tmp_path / "v2", "admin/hinted", "home-v2", {})
    assert_small(second, len(v2))
    expected = {("admin/hinted", first.commit): v1, ("admin/hinted", second.commit): v2}
    assert_downloads(tmp_path, node, proxy, expected)


def test_repo_hint_goes_once_to_an_upload_token_and_never_to_a_read_token(
    node: RunningNode, proxy: ByteCountingProxy, tmp_path: Path
) -> None:
    create_repos(node, "hint-src", "hint-empty")
    (tmp_path / "f").write_bytes(os.urandom(2 * MIB))
    stored = upload(tmp_path, node, proxy, tmp_path / "f", "admin/hint-src", "home-f", {})
    assert stored.xorbs_posted
    listed = set(stored.xorbs_posted)
    assert miss_answers(node, "admin/hint-src", "xet-write-token", 3) == [listed, None, None]
    assert miss_answers(node, "admin/hint-src", "xet-write-token", 1) == [listed]  # new token
    assert miss_answers(node, "admin/hint-src", "xet-read-token", 2) == [None, None]
    assert miss_answers(node, "admin/hint-empty", "xet-write-token", 2) == [None, None]
