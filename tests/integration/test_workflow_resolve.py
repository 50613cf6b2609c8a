"""`POST /v1/workflows/resolve`: a workflow's models matched by name to the files at the
branch heads of the repos the caller may read; bad bodies refused with a code."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import time
from collections.abc import Callable
from typing import Any

import blake3
import pytest
from huggingface_hub import HfApi
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.conftest import RunningNode


def comfyui_png(texts: dict[str, str]) -> bytes:
    """A small PNG with these text chunks, as ComfyUI saves its images (`prompt`: the API
    graph, `workflow`: the UI graph)."""
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def safetensors(payload: bytes) -> bytes:
    """A valid safetensors file holding `payload` as one U8 tensor."""
    header = json.dumps(
        {"w": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + payload


BASE = safetensors(b"base checkpoint " * 500)
LORA = safetensors(b"style lora " * 300)
OTHER_LORA = safetensors(b"another lora " * 300)
NEG = b"cos\nsystem\n(S'echo pwned'\ntR."  # a .pt pickle that calls os.system: unsafe
SECRET = safetensors(b"private vae " * 100)

WORKFLOW = {
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "SDXL\\base.safetensors"},
    },
    "10": {
        "class_type": "LoraLoader",
        "inputs": {"lora_name": "style.safetensors", "strength_model": 0.7, "model": ["4", 0]},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat, (embedding:neg:1.1)"}},
    "7": {"class_type": "VAELoader", "inputs": {"vae_name": "secret_vae.safetensors"}},
    "8": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x_nowhere.pth"}},
}


@pytest.fixture
def published(node: RunningNode, make_token: Callable[..., str]) -> str:
    """Public repos holding the checkpoint (twice: same bytes), two different `style` LoRAs
    and the embedding; a private repo holding the VAE. Returns its owner's token."""
    admin = HfApi(endpoint=node.url, token=node.admin_token)
    for repo, files in {
        "admin/sdxl": {"SDXL/base.safetensors": BASE, "README.md": b"# sdxl"},
        "admin/sdxl-copy": {"weights/base.safetensors": BASE},
        "admin/style-a": {"style.safetensors": LORA},
        "admin/style-b": {"loras/style.safetensors": OTHER_LORA},
        # What `4x_nowhere.pth` would match if `_` were a LIKE wildcard.
        "admin/embeddings": {"neg.pt": NEG, "up/4xZnowhere.pth": b"not it"},
    }.items():
        admin.create_repo(repo)
        for path, data in files.items():
            admin.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo)
    owner = make_token("vera")
    vera = HfApi(endpoint=node.url, token=owner)
    vera.create_repo("vera/vae", private=True)
    vera.upload_file(
        path_or_fileobj=SECRET, path_in_repo="secret_vae.safetensors", repo_id="vera/vae"
    )
    node.runtime.scans.run_once(limit=100)
    return owner


def resolve(node: RunningNode, body: object, token: str | None = None) -> dict[str, dict[str, Any]]:
    with node.client(token) as http:
        answer = http.post("/v1/workflows/resolve", json=body)
    assert answer.status_code == 200, answer.text
    return {r["node_id"] + ":" + r["input"]: r for r in answer.json()["requirements"]}


@pytest.mark.usefixtures("published")
def test_resolve_prefers_path_suffix_matches_and_lists_same_blob_repos(node: RunningNode) -> None:
    found = resolve(node, WORKFLOW)
    base = found["4:ckpt_name"]
    assert base["filename"] == "SDXL/base.safetensors" and base["folder"] == "checkpoints"
    assert base["status"] == "resolved"
    # `SDXL/base.safetensors` ends the path in admin/sdxl only: the exact match wins.
    assert [(c["repo"], c["path"]) for c in base["candidates"]] == [
        ("admin/sdxl", "SDXL/base.safetensors")
    ]
    candidate = base["candidates"][0]
    head = HfApi(endpoint=node.url).repo_info("admin/sdxl").sha
    assert candidate == {
        "repo": "admin/sdxl",
        "revision": head,
        "path": "SDXL/base.safetensors",
        "blake3": blake3.blake3(BASE).hexdigest(),
        "sha256": hashlib.sha256(BASE).hexdigest(),
        "size": len(BASE),
        "scan": "clean",
    }


@pytest.mark.usefixtures("published")
def test_resolve_marks_several_blobs_ambiguous_and_unknown_names_missing(node: RunningNode) -> None:
    found = resolve(node, WORKFLOW)
    lora = found["10:lora_name"]
    assert lora["status"] == "ambiguous" and lora["weight"] == 0.7
    assert {(c["repo"], c["path"]) for c in lora["candidates"]} == {
        ("admin/style-a", "style.safetensors"),
        ("admin/style-b", "loras/style.safetensors"),
    }
    assert found["8:model_name"]["status"] == "missing"
    assert found["8:model_name"]["candidates"] == []
    assert found["8:model_name"]["folder"] == "upscale_models"


@pytest.mark.usefixtures("published")
def test_resolve_same_blob_in_several_repos_is_resolved(node: RunningNode) -> None:
    body = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "BASE.safetensors"}}
    }
    base = resolve(node, body)["1:ckpt_name"]
    assert base["status"] == "resolved"
    assert {c["repo"] for c in base["candidates"]} == {"admin/sdxl", "admin/sdxl-copy"}


@pytest.mark.usefixtures("published")
def test_resolve_finds_embeddings_named_without_extension_with_their_scan(
    node: RunningNode,
) -> None:
    neg = resolve(node, WORKFLOW)["6:text"]
    assert (neg["filename"], neg["folder"], neg["weight"]) == ("neg", "embeddings", 1.1)
    assert neg["status"] == "resolved"
    assert [(c["repo"], c["path"]) for c in neg["candidates"]] == [("admin/embeddings", "neg.pt")]
    assert neg["candidates"][0]["scan"] == "unsafe"


def test_resolve_shows_private_repos_only_to_those_who_may_read_them(
    node: RunningNode, published: str, make_token: Callable[..., str]
) -> None:
    assert resolve(node, WORKFLOW)["7:vae_name"]["status"] == "missing"
    assert resolve(node, WORKFLOW, make_token("mallory"))["7:vae_name"]["candidates"] == []
    owner_sees = resolve(node, WORKFLOW, published)["7:vae_name"]
    assert owner_sees["status"] == "resolved"
    assert owner_sees["candidates"][0]["repo"] == "vera/vae"


@pytest.mark.usefixtures("published")
def test_resolve_reads_the_ui_format(node: RunningNode) -> None:
    ui = {
        "nodes": [
            {"id": 3, "type": "LoraLoader", "widgets_values": ["loras/style.safetensors", 0.4, 1]},
        ],
        "links": [],
    }
    lora = resolve(node, ui)["3:lora_name"]
    assert lora["status"] == "resolved" and lora["weight"] == 0.4
    assert [c["repo"] for c in lora["candidates"]] == ["admin/style-b"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "WorkflowInvalid"),
        (b'{"x": 1}', "application/json", 400, "WorkflowInvalid"),
        (
            json.dumps(
                {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": "../../x"}}}
            ).encode(),
            "application/json",
            400,
            "WorkflowInvalid",
        ),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "image/png", 400, "BadGenerationData"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "application/json", 400, "BadGenerationData"),
        (b"GIF89a" + b"\x00" * 32, "image/gif", 415, "UnsupportedMediaType"),
        (b"a=b", "application/x-www-form-urlencoded", 415, "UnsupportedMediaType"),
        (
            b'{"nodes": [], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            "application/json",
            413,
            "WorkflowTooLarge",
        ),
    ],
)
def test_resolve_refuses_bad_bodies_with_a_code(
    node: RunningNode, body: bytes, content_type: str, status: int, code: str
) -> None:
    with node.client() as http:
        answer = http.post(
            "/v1/workflows/resolve", content=body, headers={"content-type": content_type}
        )
    assert answer.status_code == status, answer.text
    assert answer.headers["X-Error-Code"] == code


@pytest.mark.usefixtures("published")
def test_resolve_reads_the_workflow_a_comfyui_png_embeds(node: RunningNode) -> None:
    ui = {
        "nodes": [
            {
                "id": 4,
                "type": "CheckpointLoaderSimple",
                "widgets_values": ["SDXL/base.safetensors"],
            },
            {"id": 10, "type": "LoraLoader", "widgets_values": ["style.safetensors", 0.7, 1]},
        ]
    }
    # The UI graph (`workflow`) is read before the API one (`prompt`).
    png = comfyui_png({"prompt": json.dumps({}), "workflow": json.dumps(ui)})
    with node.client() as http:
        answer = http.post(
            "/v1/workflows/resolve", content=png, headers={"content-type": "image/png"}
        )
    assert answer.status_code == 200, answer.text
    found = {(r["node_id"], r["filename"]): r["status"] for r in answer.json()["requirements"]}
    assert found == {
        ("4", "SDXL/base.safetensors"): "resolved",
        ("10", "style.safetensors"): "ambiguous",
    }


def test_resolve_refuses_bodies_over_the_json_limit(node: RunningNode) -> None:
    cap = node.settings.limits.max_json_bytes
    huge = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "x" * (cap + 1)}}}
    with node.client() as http:
        answer = http.post("/v1/workflows/resolve", json=huge)
    assert answer.status_code == 413
    assert answer.headers["X-Modelyard-Limit"] == "max_json_bytes"
    image_cap = node.settings.limits.max_image_bytes  # a PNG may be larger than any JSON
    with node.client() as http:
        answer = http.post(
            "/v1/workflows/resolve",
            content=b"\x89PNG\r\n\x1a\n" + bytes(cap),
            headers={"content-type": "image/png"},
        )
        assert answer.headers["X-Error-Code"] == "BadGenerationData"  # read, not refused
        answer = http.post(
            "/v1/workflows/resolve",
            content=bytes(image_cap + 1),
            headers={"content-type": "image/png"},
        )
    assert answer.status_code == 413
    assert answer.headers["X-Modelyard-Limit"] == "max_image_bytes"


@pytest.mark.usefixtures("published")
def test_files_at_heads_are_found_by_exact_base_name_only(node: RunningNode) -> None:
    def named(*names: str) -> list[tuple[str, str]]:
        with node.runtime.db.read() as tx:
            found = tx.commits.at_heads_named(names, "refs/heads/main", 100)
        return [(f.repo.repo.full_name, f.file.path) for f in found]

    # No pattern matching: `_` and `%` are letters, a folder is no base name.
    assert named("4x_nowhere.pth", "4x%.pth", "%", "sdxl", "up", "") == []
    assert named("style.safetensors") == [
        ("admin/style-a", "style.safetensors"),
        ("admin/style-b", "loras/style.safetensors"),
    ]
    assert named("base.safetensors", "neg.pt") == [
        ("admin/embeddings", "neg.pt"),
        ("admin/sdxl", "SDXL/base.safetensors"),
        ("admin/sdxl-copy", "weights/base.safetensors"),
    ]


def _many_nodes(count: int) -> bytes:
    node = '{"class_type":"VAELoader","inputs":{"vae_name":"v.pt"}}'
    return ("{" + ",".join(f'"{i}":{node}' for i in range(count)) + "}").encode()


@pytest.mark.parametrize(
    ("body", "cap"),
    [
        (b"[" * 900_000 + b"]" * 100, "depth"),  # unbalanced too: refused before it matters
        (b'{"nodes": [], "x": ' + b'{"a":' * 150_000 + b"1" + b"}" * 150_000 + b"}", "depth"),
        (_many_nodes(15_000), "nodes"),
        (b'{"nodes": [], "x": "' + b"x" * 300_000 + b'"}', "string length"),
        (b'{"nodes": [], "x": [' + b"0," * 450_000 + b"0]}", None),  # legal: answered
    ],
    ids=["brackets", "objects", "nodes", "string", "values"],
)
def test_resolve_answers_hostile_workflows_in_bounded_time(
    node: RunningNode, body: bytes, cap: str | None
) -> None:
    assert len(body) <= node.settings.limits.max_json_bytes
    with node.client() as http:
        started = time.monotonic()
        answer = http.post("/v1/workflows/resolve", content=body)
        elapsed = time.monotonic() - started
        if cap is None:
            assert answer.status_code == 200 and answer.json() == {"requirements": []}
        else:
            assert (answer.status_code, answer.headers["X-Error-Code"]) == (
                413,
                "WorkflowTooLarge",
            )
            assert answer.json()["detail"]["cap"] == cap
        assert elapsed < 3, elapsed
        assert http.get("/v1/health").status_code == 200  # the node is still there
