"""Images' generation data read in the background and "made with" links: the files an image's
resources resolve to (by hash, then by name), on the node and on an eager peer, the images that
used a file, and model_info's count; images made here with Pillow, models by hand."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from typing import Any

import blake3
from huggingface_hub import HfApi
from PIL import Image, PngImagePlugin

from tests.conftest import ADMIN_TOKEN, RunningNode
from tests.safetensors_files import addnet_hash, safetensors_file
from tests.unit.test_generation import api_graph
from tests.unit.test_imagemeta import MB, chunk, png_head, zeros_zlib

FAST = {"interval": 0.05}
LORA = safetensors_file({"up": 4000, "down": 4000})
CHECKPOINT = safetensors_file({"w": 6000})
TWEAKER = safetensors_file({"t": 3000})


def parameters() -> str:
    """A1111 text naming the LoRA by AutoV3 (under another name), the checkpoint by AutoV2
    (under another name), a LoRA by name only and one that is nowhere."""
    autov3, autov2 = addnet_hash(LORA)[:12], hashlib.sha256(CHECKPOINT).hexdigest()[:10]
    return (
        "a cat <lora:mystyle:0.7> <lora:detailTweaker:0.4> <lora:nowhere:1> <b>&amp;</b>\n"
        "Negative prompt: <script>alert(1)</script>\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 6.5, Seed: 42, Size: 64x48, "
        f"Model hash: {autov2}, Model: renamed_checkpoint, "
        f'Lora hashes: "mystyle: {autov3}", Version: v1.10.1'
    )


def png(text: str | None = None, key: str = "parameters") -> bytes:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text(key, text, zip=True)
    out = io.BytesIO()
    Image.effect_noise((64, 48), 40).convert("RGB").save(out, "PNG", pnginfo=info)
    return out.getvalue()


def jpeg(text: str) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + text.encode()
    out = io.BytesIO()
    Image.effect_noise((64, 48), 40).convert("RGB").save(out, "JPEG", exif=exif)
    return out.getvalue()


def comfy() -> dict[str, object]:
    """ComfyUI's API graph whose LoRA loader names the LoRA's file in a subfolder (Windows
    separators), and whose checkpoint is nowhere."""
    graph = api_graph()
    graph["10"]["inputs"]["lora_name"] = "SDXL\\styleLora.safetensors"  # type: ignore[index]
    return graph


def bomb() -> bytes:
    """A PNG whose zTXt chunk inflates to 64 MiB, over the reader's cap."""
    return png_head() + chunk(b"zTXt", b"parameters\0\0" + zeros_zlib(64 * MB))


def publish(node: RunningNode, repo: str, files: dict[str, bytes], **options: Any) -> None:
    api = HfApi(endpoint=node.url, token=options.pop("token", ADMIN_TOKEN))
    api.create_repo(repo, exist_ok=True, **options)
    for path, data in files.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo)


def publish_models(node: RunningNode) -> None:
    publish(node, "admin/style-lora", {"loras/styleLora.safetensors": LORA})
    publish(node, "admin/pony", {"ponyDiffusionV6XL_v6.safetensors": CHECKPOINT})
    publish(node, "admin/tweaks", {"DetailTweaker.safetensors": TWEAKER})


def _b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def get(node: RunningNode, url: str, token: str | None = ADMIN_TOKEN) -> Any:
    with node.client(token) as http:
        response = http.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def images(node: RunningNode, repo: str, token: str | None = ADMIN_TOKEN) -> dict[str, Any]:
    return {i["path"]: i for i in get(node, f"/v1/repos/model/{repo}/images", token)}


def settled(
    node: RunningNode, repo: str, timeout: float = 20, linked: bool = True
) -> dict[str, Any]:
    """The repo's images once none is pending and (`linked`) every hash written resolved (the
    image and safetensors hash jobs run in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        found = images(node, repo)
        hashed = not linked or all(
            r["match"] != "unresolved" or r["hash"] is None
            for i in found.values()
            for r in i["resources"]
        )
        if (all(i["state"] != "pending" for i in found.values()) and hashed) or (
            time.monotonic() > deadline
        ):
            return found
        time.sleep(0.05)


def links(image: dict[str, Any]) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Resource name -> (match, [(repo, path)])."""
    return {
        r["name"]: (r["match"], [(c["repo"], c["path"]) for c in r["candidates"]])
        for r in image["resources"]
    }


EXPECTED_LINKS = {
    "renamed_checkpoint": ("hash", [("admin/pony", "ponyDiffusionV6XL_v6.safetensors")]),
    "mystyle": ("hash", [("admin/style-lora", "loras/styleLora.safetensors")]),
    "detailTweaker": ("name", [("admin/tweaks", "DetailTweaker.safetensors")]),
    "nowhere": ("unresolved", []),
}


def test_images_are_read_in_the_background_and_link_to_the_models_they_used(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node("n", hashes=FAST, images=FAST)
    publish_models(node)
    named = "Steps: 30, Sampler: Euler, CFG scale: 5, Seed: 1, Model: ponyDiffusionV6XL_v6"
    publish(
        node,
        "admin/gallery",
        {
            "samples/cat.png": png(parameters()),
            "samples/pony.JPG": jpeg(named),
            "comfy.png": png(json.dumps(comfy()), "prompt"),
            "plain.webp": png(),  # no metadata (a PNG under a WebP name: read as what it is)
            "bomb.png": bomb(),
            "README.md": b"# gallery",
        },
    )
    found = settled(node, "admin/gallery")
    assert set(found) == {
        "samples/cat.png",
        "samples/pony.JPG",
        "comfy.png",
        "plain.webp",
        "bomb.png",
    }

    cat = found["samples/cat.png"]
    assert cat["state"] == "read" and cat["problem"] is None
    generation = cat["generation"]
    assert generation["prompt"].startswith("a cat <lora:mystyle:0.7>")
    assert generation["negative_prompt"] == "<script>alert(1)</script>"
    assert (generation["sampler"], generation["steps"], generation["cfg"]) == ("Euler a", 20, 6.5)
    assert (generation["seed"], generation["size"], generation["source"]) == (42, [64, 48], "a1111")
    assert links(cat) == EXPECTED_LINKS
    weights = {r["name"]: r["weight"] for r in cat["resources"]}
    assert weights["mystyle"] == 0.7 and weights["detailTweaker"] == 0.4

    pony = found["samples/pony.JPG"]
    assert pony["state"] == "read"
    assert links(pony) == {
        "ponyDiffusionV6XL_v6": ("name", [("admin/pony", "ponyDiffusionV6XL_v6.safetensors")])
    }
    comfy_links = links(found["comfy.png"])
    assert found["comfy.png"]["generation"]["source"] == "comfyui"
    # ComfyUI's model names are paths under its folder: the Windows separator reads as "/".
    assert comfy_links["SDXL/styleLora.safetensors"] == (
        "name",
        [("admin/style-lora", "loras/styleLora.safetensors")],
    )
    assert comfy_links["sd_xl_base.safetensors"] == ("unresolved", [])
    assert found["plain.webp"]["state"] == "none" and found["plain.webp"]["resources"] == []
    refused = found["bomb.png"]
    assert refused["state"] == "refused" and "inflates past" in refused["problem"]
    assert get(node, "/v1/health")["status"] == "ok"  # the node took the bomb in its stride

    # used-by, by every form of the LoRA's hash; the checkpoint is used by name and by hash.
    lora_sha = hashlib.sha256(LORA).hexdigest()
    for form in (addnet_hash(LORA)[:12], f"autov3:{addnet_hash(LORA)[:12]}", lora_sha):
        used = get(node, f"/v1/files/by-hash/{form}/used-by")
        assert [(u["repo"], u["path"], u["name"], u["weight"], u["match"]) for u in used] == [
            ("admin/gallery", "comfy.png", "SDXL/styleLora.safetensors", 0.8, "name"),
            ("admin/gallery", "samples/cat.png", "mystyle", 0.7, "hash"),
        ], form
    used = get(node, f"/v1/files/by-hash/{lora_sha[:10]}/used-by")  # AutoV2 finds it too
    assert [u["path"] for u in used] == ["comfy.png", "samples/cat.png"]
    checkpoint = get(node, f"/v1/files/by-hash/{hashlib.sha256(CHECKPOINT).hexdigest()}/used-by")
    assert sorted((u["path"], u["match"]) for u in checkpoint) == [
        ("samples/cat.png", "hash"),
        ("samples/pony.JPG", "name"),
    ]
    tweaker = get(node, f"/v1/files/by-hash/{hashlib.sha256(TWEAKER).hexdigest()}/used-by")
    assert [(u["path"], u["match"], u["weight"]) for u in tweaker] == [
        ("samples/cat.png", "name", 0.4)
    ]

    with node.client(ADMIN_TOKEN) as http:  # the repo page shows it under each image, escaped
        page = http.get("/admin/gallery").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in page
    assert '<a href="/admin/style-lora">mystyle</a> (0.7)' in page
    assert '<a href="/admin/tweaks">detailTweaker</a> (0.4)' in page
    assert "nowhere (1.0)" in page and "<dt>CFG</dt><dd>6.5</dd>" in page
    assert "Generation data refused: zTXt" in page
    with node.client(ADMIN_TOKEN) as http:  # and the LoRA's page says who used it
        page = http.get("/admin/style-lora").text
    assert '<dd id="used-by">2 images on this node, weights 0.7 to 0.8</dd>' in page

    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    assert api.model_info("admin/style-lora").modelyard["used_by"] == {  # type: ignore[attr-defined]
        "images": 2,
        "weights": [0.7, 0.8],
    }
    assert api.model_info("admin/pony").modelyard["used_by"]["images"] == 2  # type: ignore[attr-defined]
    assert "used_by" not in api.model_info("admin/gallery").modelyard  # type: ignore[attr-defined]


def test_an_image_is_pending_until_the_job_reads_it_and_links_models_that_came_later(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node("n", hashes=FAST, images={"enabled": False})
    publish(node, "admin/gallery", {"cat.png": png(parameters())})
    assert images(node, "admin/gallery")["cat.png"]["state"] == "pending"
    assert node.runtime.images.run_once() == 1
    cat = images(node, "admin/gallery")["cat.png"]
    assert cat["state"] == "read"
    assert {r["match"] for r in cat["resources"]} == {"unresolved"}  # no model here yet

    publish_models(node)  # the models arrive after the image was read: no re-read needed
    assert links(settled(node, "admin/gallery")["cat.png"]) == EXPECTED_LINKS
    assert node.runtime.images.run_once() == 0


def test_workflow_files_are_read_for_the_models_they_name_and_listed_in_used_by(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node("n", hashes=FAST, images={"enabled": False})
    publish_models(node)
    ui = {
        "nodes": [
            {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["pony.safetensors"]},
            {"id": 9, "type": "LoraLoader", "widgets_values": ["styleLora.safetensors", 0.6, 1]},
        ]
    }
    escaping = {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": "../../etc/x"}}}
    publish(
        node,
        "admin/flows",
        {
            "portrait.json": json.dumps(ui).encode(),
            "config.json": b'{"architectures": ["UNet"]}',
            "escaping.json": json.dumps(escaping).encode(),
        },
    )
    assert node.runtime.images.run_once() == 3
    files = {
        "portrait.json": json.dumps(ui).encode(),
        "config.json": b'{"architectures": ["UNet"]}',
        "escaping.json": json.dumps(escaping).encode(),
    }
    with node.runtime.db.read() as tx:
        records = tx.images.of(_b3(d) for d in files.values())
    states = {path: records[_b3(data)].state for path, data in files.items()}
    assert states == {"portrait.json": "read", "config.json": "none", "escaping.json": "refused"}
    assert "'..' segment" in (records[_b3(files["escaping.json"])].problem or "")

    lora = get(node, f"/v1/files/by-hash/{addnet_hash(LORA)[:12]}/used-by")
    assert [(u["repo"], u["path"], u["what"], u["weight"], u["match"]) for u in lora] == [
        ("admin/flows", "portrait.json", "workflow", 0.6, "name")
    ]
    # A workflow is no image: model_info counts images only.
    assert "used_by" not in HfApi(endpoint=node.url).model_info("admin/style-lora").modelyard  # type: ignore[attr-defined]
    assert images(node, "admin/flows") == {}  # nor is it listed among the repo's images
    # The workflow repo's model_info lists what each workflow file needs, linked.
    flows = HfApi(endpoint=node.url).model_info("admin/flows").modelyard["workflows"]  # type: ignore[attr-defined]
    assert [f["path"] for f in flows] == ["portrait.json"]
    assert [
        (r["kind"], r["name"], r.get("weight"), r["match"], [c["repo"] for c in r["candidates"]])
        for r in flows[0]["requirements"]
    ] == [
        ("checkpoint", "pony.safetensors", None, "unresolved", []),
        ("lora", "styleLora.safetensors", 0.6, "name", ["admin/style-lora"]),
    ]


def test_a_private_repos_images_are_seen_only_by_who_may_read_it(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node("n", hashes=FAST, images=FAST)
    publish_models(node)
    bob, alice = (node.runtime.auth.create_token(u, write=True) for u in ("bob", "alice"))
    publish(node, "bob/secret", {"cat.png": png(parameters())}, token=bob, private=True)
    publish(node, "bob/secret-lora", {"mine.safetensors": LORA}, token=bob, private=True)
    publish(node, "admin/gallery", {"cat.png": png(parameters())})
    deadline = time.monotonic() + 20
    while node.runtime.images.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    autov3 = addnet_hash(LORA)[:12]
    used = get(node, f"/v1/files/by-hash/{autov3}/used-by", bob)
    assert sorted(u["repo"] for u in used) == ["admin/gallery", "bob/secret"]
    for token in (alice, None):
        used = get(node, f"/v1/files/by-hash/{autov3}/used-by", token)
        assert [u["repo"] for u in used] == ["admin/gallery"]
        with node.client(token) as http:
            assert http.get("/v1/repos/model/bob/secret/images").status_code in (401, 404)
    # A public image's LoRA resolves to bob's private copy too, for bob only.
    settled(node, "admin/gallery")
    mystyle = {
        who: links(images(node, "admin/gallery", token)["cat.png"])["mystyle"]
        for who, token in (("bob", bob), ("alice", alice), ("anonymous", None))
    }
    assert mystyle["bob"] == (
        "hash",
        [
            ("admin/style-lora", "loras/styleLora.safetensors"),
            ("bob/secret-lora", "mine.safetensors"),
        ],
    )
    assert mystyle["alice"] == mystyle["anonymous"] == EXPECTED_LINKS["mystyle"]
    info = HfApi(endpoint=node.url, token=alice).model_info("admin/style-lora")
    assert info.modelyard["used_by"]["images"] == 1  # type: ignore[attr-defined] # public only


def test_bad_hashes_and_unknown_repos_or_revisions_are_refused_with_a_code(
    node: RunningNode,
) -> None:
    publish(node, "admin/gallery", {"cat.png": png()})
    with node.client(ADMIN_TOKEN) as http:
        for bad in ("xyz", "autov3:0123abcd", "0123456789a"):
            response = http.get(f"/v1/files/by-hash/{bad}/used-by")
            assert response.status_code == 400, bad
            assert response.headers["X-Error-Code"] == "BadRequest"
        for url, code in (
            ("/v1/repos/model/admin/nothing/images", "RepoNotFound"),
            ("/v1/repos/model/admin/gallery/images?revision=nope", "RevisionNotFound"),
        ):
            response = http.get(url)
            assert (response.status_code, response.headers["X-Error-Code"]) == (404, code)


def test_an_eager_peer_reads_the_images_it_replicated_and_links_its_own_copies(
    start_node: Callable[..., RunningNode],
) -> None:
    home = start_node("home", hashes=FAST, images=FAST)
    replica = start_node(
        "replica", hashes=FAST, images=FAST, sync={"long_poll": 1, "probe_interval": 0.2}
    )
    with replica.client(ADMIN_TOKEN) as http:
        added = http.post(
            "/v1/peers", json={"url": home.url, "token": ADMIN_TOKEN, "blobs": "eager"}
        )
    assert added.status_code == 201, added.text
    publish_models(home)
    publish(home, "admin/gallery", {"cat.png": png(parameters())})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with replica.client(ADMIN_TOKEN) as http:
            response = http.get("/v1/repos/model/admin/gallery/images")
            if response.status_code == 200 and response.json():  # the commit has arrived
                break
        time.sleep(0.1)
    cat = settled(replica, "admin/gallery", timeout=30)["cat.png"]
    assert cat["state"] == "read" and links(cat) == EXPECTED_LINKS
    used = get(replica, f"/v1/files/by-hash/{addnet_hash(LORA)[:12]}/used-by")
    assert [(u["repo"], u["path"]) for u in used] == [("admin/gallery", "cat.png")]


def test_a_node_restarted_midway_reads_every_image_once(
    start_node: Callable[..., RunningNode],
) -> None:
    files = {f"img{i}.PNG": png(parameters().replace("Seed: 42", f"Seed: {i}")) for i in range(3)}
    manual = start_node("n", images={"enabled": False, "batch": 1})
    publish(manual, "admin/gallery", files)
    assert manual.runtime.images.run_once() == 1  # one read by hand, then a stop
    states = [i["state"] for i in images(manual, "admin/gallery").values()]
    assert sorted(states) == ["pending", "pending", "read"]
    manual.server.stop()

    node = start_node("n", images=FAST)
    found = settled(node, "admin/gallery", linked=False)
    assert {p: i["generation"]["seed"] for p, i in found.items()} == {
        f"img{i}.PNG": i for i in range(3)
    }
    assert node.runtime.images.pending() == [] and node.runtime.images.run_once() == 0
