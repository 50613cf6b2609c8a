"""The repo pages in depth: facts, trigger words and hashes with copy buttons, scan verdicts
that stand out, branches and tags, safetensors facts, the lineage graph, sample images, where
else a repo lives, file previews, history, owners' pages, privacy, hostile metadata in a real
browser (Debian's Chromium through Playwright), and pages with the indexer and scanner off."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import blake3
import httpx
import yaml
from huggingface_hub import CommitOperationAdd, HfApi

from tests.conftest import FAST_SYNC, RunningNode

TRAINING = {
    "ss_base_model_version": "sdxl_base_v1-0",
    "ss_network_module": "networks.lora",
    "ss_network_dim": "32",
    "ss_network_alpha": "16",
    "ss_tag_frequency": json.dumps({"10_ink": {"inkwash": 40, "brushwork": 25}}),
}
DTYPE_BYTES = {"F16": 2, "F32": 4, "BF16": 2}


def html(url: str, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(url, headers=headers, timeout=30)
    assert answer.headers["content-type"].startswith("text/html"), (url, answer.text[:300])
    return answer


def card(front: dict[str, Any], body: str = "# A model\n") -> bytes:
    return f"---\n{yaml.safe_dump(front, allow_unicode=True)}---\n{body}".encode()


def safetensors(tensors: dict[str, tuple[str, list[int]]], metadata: dict[str, str]) -> bytes:
    """A valid .safetensors file: 8-byte little-endian header length, JSON header, data."""
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = DTYPE_BYTES[dtype]
        for n in shape:
            size *= n
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\x00" * offset


def png(width: int = 3, height: int = 2) -> bytes:
    """A tiny valid PNG (red pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class Payload:
    """A pickle that would run `os.system` when loaded (never loaded here)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("true",))


def publish(api: HfApi, repo: str, files: dict[str, bytes], **kwargs: Any) -> str:
    api.create_repo(repo, exist_ok=True, **kwargs)
    repo_type = kwargs.get("repo_type")
    operations = [CommitOperationAdd(path, data) for path, data in files.items()]
    info = api.create_commit(repo, operations, commit_message="Add files", repo_type=repo_type)
    return str(info.oid)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {what}"
        time.sleep(0.05)


def test_repo_page_shows_facts_trigger_words_hashes_and_weights(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    weights = safetensors({"w": ("F16", [4, 8]), "b": ("F32", [8])}, TRAINING)
    front = {
        "kind": "lora",
        "base_model": "stabilityai/sdxl-base",
        "license": "openrail",
        "tags": ["inkwash", "portrait"],
        "trigger_words": ["inkw style", "zq-brush"],
    }
    publish(api, "admin/ink", {"README.md": card(front), "ink.safetensors": weights})
    node.runtime.scans.run_once()
    page = html(f"{node.url}/admin/ink")
    assert page.status_code == 200
    text = page.text
    for fact in ("lora", "stabilityai/sdxl-base", "openrail"):
        assert f"<dd>{fact}</dd>" in text, fact
    assert '<a href="/search?tag=inkwash">inkwash</a>' in text
    assert "<code data-copy>inkw style</code>" in text and "<code data-copy>zq-brush</code>" in text
    sha = hashlib.sha256(weights).hexdigest()
    row = re.search(
        r"<tr>\s*<td><a href=\"/admin/ink/blob/main/ink.safetensors\".*?</tr>", text, re.S
    )
    assert row is not None, text
    assert 'class="badge scan-clean"' in row.group(0)
    assert f'data-copy="{sha}"' in row.group(0)
    assert f"<code data-copy>{sha[:10].upper()}</code>" in row.group(0)  # AutoV2
    assert 'href="/admin/ink/resolve/main/ink.safetensors" download' in row.group(0)
    size = f"{len(weights)} B" if len(weights) < 1000 else f"{len(weights) / 1000:.1f} KB"
    assert f"<td>{size}</td>" in row.group(0)
    weights_part = text[text.index('id="weights"') :]
    assert "<td>F16</td><td>32</td>" in weights_part and "<td>F32</td><td>8</td>" in weights_part
    assert "<td>40</td>" in weights_part  # the total
    assert "<dt><code>ss_network_dim</code></dt><dd>32</dd>" in weights_part
    assert "<code data-copy>inkwash</code>" in weights_part  # suggested from ss_tag_frequency
    assert '<script src="/static/modelyard.js" defer></script>' in text
    script = httpx.get(f"{node.url}/static/modelyard.js")
    assert script.status_code == 200 and "data-copy" in script.text
    assert not re.search(r'src="(https?:)?//', text)  # nothing loads from another site
    blob = html(f"{node.url}/admin/ink/blob/main/ink.safetensors").text
    assert f"<code data-copy>{sha}</code>" in blob and f"<code data-copy>{sha[:10].upper()}" in blob
    dataset = publish(api, "admin/frames", {"a.txt": b"frames"}, repo_type="dataset")
    assert dataset in html(f"{node.url}/datasets/admin/frames").text


def test_copy_buttons_keyboard_dark_mode_and_phone_width_in_a_browser(
    node: RunningNode, browser: Any
) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    publish(api, "admin/base", {"README.md": card({"kind": "checkpoint"})})
    front = {"kind": "lora", "base_model": "admin/base", "trigger_words": ["zq-brush"]}
    weights = safetensors({"w": ("F16", [2, 2])}, {})
    publish(api, "admin/copyme", {"README.md": card(front), "w.safetensors": weights})
    url = f"{node.url}/admin/copyme"

    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(url)
    button = page.locator("#trigger-words button.copy")
    assert button.count() == 1 and button.inner_text() == "copy"
    button.click()
    assert page.evaluate("navigator.clipboard.readText()") == "zq-brush"
    page.locator("#files code[data-copy] + button.copy").first.click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(r"[0-9a-f]{64}", copied), copied  # the whole hash, not the short one
    focused = []
    page.locator("body").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.outerHTML.slice(0, 60)"))
    assert any(f.startswith('<select id="rev"') for f in focused), focused
    assert any(f.startswith('<button type="submit">Go') for f in focused), focused
    assert any(f.startswith('<button type="button" class="copy"') for f in focused), focused
    assert any(f.startswith('<a href="/admin/base">') for f in focused), focused  # in the SVG
    context.close()

    plain = browser.new_context(java_script_enabled=False)
    page = plain.new_page()
    page.goto(url)
    assert page.locator("button.copy").count() == 0
    assert page.locator("#trigger-words code").inner_text() == "zq-brush"
    plain.close()

    dark = browser.new_context(color_scheme="dark", viewport={"width": 360, "height": 740})
    page = dark.new_page()
    page.goto(url)
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
    wide = page.evaluate(  # what sticks out, for the failure message
        "[...document.querySelectorAll('body *')]"
        ".filter(e => !e.closest('.wrap, figure') && e.getBoundingClientRect().right > innerWidth)"
        ".map(e => e.outerHTML.slice(0, 80))"
    )
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), wide
    dark.close()


def test_flagged_files_get_a_banner_and_badge_and_stay_listed(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    publish(
        api,
        "admin/risky",
        {
            "good.safetensors": safetensors({"w": ("F16", [2])}, {}),
            "broken.safetensors": b"this is not a safetensors file",
            "model.bin": pickle.dumps(Payload()),
            "notes.txt": b"plain",
        },
    )
    node.runtime.scans.run_once()
    repo = html(f"{node.url}/admin/risky").text
    banner = repo[repo.index('id="safety-banner"') : repo.index("</section>")]
    assert 'role="alert"' in banner
    assert "broken.safetensors" in banner and "invalid safetensors" in banner
    assert "model.bin" in banner and "system" in banner
    assert "good.safetensors" not in banner and "notes.txt" not in banner
    assert 'scan-unsafe">⚠ unsafe</span>' in repo
    assert repo.count('<tr class="flagged">') == 2
    assert 'href="/admin/risky/resolve/main/broken.safetensors" download' in repo  # not hidden
    assert 'class="badge scan-unsafe">⚠ unsafe' in repo[repo.index('id="facts"') :]
    tree = html(f"{node.url}/admin/risky/tree/main").text
    assert 'id="safety-banner"' in tree and tree.count('<tr class="flagged">') == 2
    blob = html(f"{node.url}/admin/risky/blob/main/broken.safetensors").text
    assert 'id="safety-banner"' in blob and "invalid safetensors" in blob
    clean = html(f"{node.url}/admin/risky/blob/main/good.safetensors").text
    assert 'id="safety-banner"' not in clean and "scan-clean" in clean
    assert "not scanned" in html(f"{node.url}/admin/risky/blob/main/notes.txt").text


def test_branch_and_tag_selector_and_revision_pages_keep_the_revision(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    publish(api, "admin/revs", {"main.txt": b"on main"})
    api.create_branch("admin/revs", branch="feat/x")
    api.upload_file(
        path_or_fileobj=b"on the branch",
        path_in_repo="branch.txt",
        repo_id="admin/revs",
        revision="feat/x",
    )
    api.create_tag("admin/revs", tag="v1")
    main = html(f"{node.url}/admin/revs").text
    form = main[main.index('<form class="refs"') : main.index("</form>", main.index("refs"))]
    assert 'method="get" action="/admin/revs"' in form and '<label for="rev">' in form
    assert '<option value="main" selected>' in form
    assert '<option value="feat/x">' in form and '<option value="v1">' in form
    assert '<button type="submit">Go</button>' in form
    assert "branch.txt" not in main
    chosen = html(f"{node.url}/admin/revs?rev=feat/x").text
    assert '<option value="feat/x" selected>' in chosen
    assert 'href="/admin/revs/blob/feat%2Fx/branch.txt"' in chosen
    assert 'href="/admin/revs/tree/feat%2Fx"' in chosen
    assert 'href="/admin/revs/commits/feat%2Fx"' in chosen
    assert 'href="/admin/revs/resolve/feat%2Fx/branch.txt" download' in chosen
    tree = html(f"{node.url}/admin/revs/tree/feat%2Fx").text
    assert "branch.txt" in tree and '<option value="feat/x" selected>' in tree
    blob = html(f"{node.url}/admin/revs/blob/feat%2Fx/branch.txt").text
    assert "on the branch" in blob and 'href="/admin/revs/commits/feat%2Fx"' in blob
    assert html(f"{node.url}/admin/revs?rev=nope").status_code == 404


def test_lineage_graph_links_parents_and_children_the_viewer_may_see(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    weights = b"hash parent weights " * 100
    publish(api, "admin/base", {"README.md": card({"kind": "checkpoint"})})
    publish(api, "admin/by-hash", {"p.safetensors": weights})
    lineage = [
        {"repo": "admin/base@main", "method": "weighted_sum", "ratio": 0.6},
        {"hash": hashlib.sha256(weights).hexdigest()[:10], "method": "weighted_sum", "ratio": 0.4},
        {"repo": "elsewhere/not-here"},
    ]
    publish(api, "admin/merge", {"README.md": card({"lineage": lineage})})
    publish(api, "admin/child", {"README.md": card({"base_model": "admin/merge"})})
    olga = node.runtime.auth.create_token("olga", write=True)
    publish(
        HfApi(endpoint=node.url, token=olga),
        "olga/secret-child",
        {"README.md": card({"base_model": "admin/merge"})},
        private=True,
    )
    page = html(f"{node.url}/admin/merge").text
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert '<a href="/admin/base">' in svg and "weighted_sum 0.6" in svg
    assert '<a href="/admin/by-hash">' in svg and "weighted_sum 0.4" in svg
    assert "elsewhere/not-here" in svg and '<a href="/elsewhere' not in svg  # named, no link
    assert '<a href="/admin/child">' in svg
    assert "secret-child" not in page  # private: not shown to others
    assert '<a href="/olga/secret-child">' in html(f"{node.url}/admin/merge", olga).text
    assert "parents: 3, children: 1" in svg
    child = html(f"{node.url}/admin/child").text
    assert '<a href="/admin/merge">' in child[child.index("<svg") :]
    found = html(f"{node.url}/search?tag=parent:admin/merge").text  # the tag children carry
    assert "admin/child" in found and "secret-child" not in found
    # Children that name one of its files by hash: AutoV2 (admin/merge) and BLAKE3 here.
    by_blake3 = {"lineage": [{"hash": blake3.blake3(weights).hexdigest()}]}
    publish(api, "admin/blake-child", {"README.md": card(by_blake3)})
    by_sha256 = {"lineage": [{"hash": "sha256:" + hashlib.sha256(weights).hexdigest().upper()}]}
    publish(
        HfApi(endpoint=node.url, token=olga),
        "olga/secret-hash-child",
        {"README.md": card(by_sha256)},
        private=True,
    )
    while node.runtime.indexer.run_once():  # found in the index, not read directly
        pass
    autov2 = hashlib.sha256(weights).hexdigest()[:10]
    assert "admin/merge" in html(f"{node.url}/search?tag=parent-hash:{autov2}").text
    held = html(f"{node.url}/admin/by-hash").text
    svg = held[held.index("<svg") : held.index("</svg>")]
    assert '<a href="/admin/merge">' in svg and '<a href="/admin/blake-child">' in svg
    assert "parents: 0, children: 2" in svg
    assert "secret-hash-child" not in held  # private: not shown to others
    assert '<a href="/olga/secret-hash-child">' in html(f"{node.url}/admin/by-hash", olga).text
    publish(api, "admin/alone", {"a.txt": b"no family"})
    assert "No parents declared" in html(f"{node.url}/admin/alone").text
    assert "<svg" not in html(f"{node.url}/admin/base/tree/main").text


def test_gallery_shows_sample_images_served_by_the_node(node: RunningNode, browser: Any) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    images = {f"samples/{i}.png": png() for i in range(3)}
    api.create_repo("admin/gallery")
    before_images = api.upload_file(
        path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="admin/gallery"
    ).oid
    publish(api, "admin/gallery", {**images, "samples/readme.txt": b"not an image"})
    text = html(f"{node.url}/admin/gallery").text
    gallery = text[text.index('id="gallery"') : text.index("</ul>", text.index('id="gallery"'))]
    for path in images:
        src = f'src="/admin/gallery/raw/main/{path}"'
        assert f'<img loading="lazy" {src} alt="Sample image {path}">' in gallery
    assert "readme.txt" not in gallery
    page = browser.new_page()
    page.goto(f"{node.url}/admin/gallery")
    page.locator("#gallery img").last.scroll_into_view_if_needed()
    # Polled from Python: wait_for_function polls with eval, which the page's CSP forbids.
    loaded = (
        "[...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth)"
    )
    for _ in range(100):
        if page.evaluate(loaded):
            break
        page.wait_for_timeout(100)
    assert page.evaluate(loaded), "gallery images did not load in 10 s"
    assert page.evaluate("document.querySelector('#gallery img').naturalWidth") == 3
    blob = html(f"{node.url}/admin/gallery/blob/main/samples/0.png").text
    assert '<img class="preview" src="/admin/gallery/raw/main/samples/0.png"' in blob
    assert 'id="gallery"' not in html(f"{node.url}/admin/gallery?rev={before_images}").text


def test_blob_preview_shows_text_escaped_and_says_when_cut_or_binary(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    big = ("line <b>bold</b>\n" * 20000).encode()  # 340 KB: cut at 256 KB
    publish(
        api,
        "admin/previews",
        {
            "big.txt": big,
            "small.py": "print('héllo') # <script>x</script>\n".encode(),
            "latin1.txt": b"caf\xe9",
            "data.bin.dat": b"\x00\x01\x02binary",
        },
    )
    small = html(f"{node.url}/admin/previews/blob/main/small.py").text
    assert (
        '<pre class="preview"><code>print(&#39;héllo&#39;) # &lt;script&gt;x&lt;/script&gt;'
        in small
    )
    assert "Showing the first" not in small
    cut = html(f"{node.url}/admin/previews/blob/main/big.txt").text
    assert "Showing the first 262.1 KB of 340.0 KB" in cut
    shown = cut[cut.index('<pre class="preview"><code>') : cut.index("</code></pre>")]
    assert shown.count("line &lt;b&gt;bold&lt;/b&gt;") == 256 * 1024 // 17
    assert "\ufffd" in html(f"{node.url}/admin/previews/blob/main/latin1.txt").text
    binary = html(f"{node.url}/admin/previews/blob/main/data.bin.dat").text
    assert "Binary file: no preview." in binary and "<pre" not in binary


def test_commits_page_paginates_and_links_each_commit(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    api.create_repo("admin/busy")
    for i in range(52):
        api.create_commit(
            "admin/busy", [CommitOperationAdd(f"{i}.txt", b"x")], commit_message=f"step {i}"
        )
    ids = [c.commit_id for c in api.list_repo_commits("admin/busy")]  # newest first
    assert len(ids) == 53
    first = html(f"{node.url}/admin/busy/commits/main").text
    linked = re.findall(r'<a href="/admin/busy/commit/([0-9a-f]{40})">', first)
    history = first[first.index('id="history"') :]
    assert re.findall(r'<a href="/admin/busy/commit/([0-9a-f]{40})">', history) == ids[:50]
    assert ids[0] in linked and "step 51" in history and "step 1<" not in history
    assert '<a rel="next" href="?p=2">Older commits</a>' in first and 'rel="prev"' not in first
    second = html(f"{node.url}/admin/busy/commits/main?p=2").text
    rest = re.findall(r'<a href="/admin/busy/commit/([0-9a-f]{40})">', second)
    assert rest[-3:] == ids[50:] and 'start="51"' in second
    assert '<a rel="prev" href="?p=1">Newer commits</a>' in second and 'rel="next"' not in second
    for odd in ("?p=0", "?p=-4", "?p=99999999"):
        assert html(f"{node.url}/admin/busy/commits/main{odd}").status_code == 200
    commit = html(f"{node.url}/admin/busy/commit/{ids[1]}").text
    assert "step 50" in commit and 'href="/admin/busy/blob/' in commit
    assert html(f"{node.url}/admin/busy/commits/nope").status_code == 404


def test_author_page_lists_what_the_viewer_may_see_and_reserved_names_are_404(
    node: RunningNode,
) -> None:
    olga = node.runtime.auth.create_token("olga", write=True)
    api = HfApi(endpoint=node.url, token=olga)
    publish(api, "olga/public-model", {"README.md": card({"kind": "lora"})})
    publish(api, "olga/frames", {"a.txt": b"a"}, repo_type="dataset")
    publish(api, "olga/hidden-model", {"a.txt": b"a"}, private=True)
    publish(HfApi(endpoint=node.url, token=node.admin_token), "admin/other", {"a.txt": b"a"})
    anonymous = html(f"{node.url}/olga").text
    assert '<a href="/olga/public-model">' in anonymous
    assert '<a href="/datasets/olga/frames">' in anonymous
    assert "hidden-model" not in anonymous and "admin/other" not in anonymous
    assert "olga/hidden-model" in html(f"{node.url}/olga", olga).text
    repo = html(f"{node.url}/olga/public-model").text
    assert '<a href="/olga">olga</a>' in repo  # the owner is one click away
    nobody = html(f"{node.url}/nobody-here")
    assert nobody.status_code == 404 and "No user or organization" in nobody.text
    only_private = node.runtime.auth.create_token("quiet", write=True)
    publish(HfApi(endpoint=node.url, token=only_private), "quiet/x", {"a": b"a"}, private=True)
    assert html(f"{node.url}/quiet").status_code == 404
    assert html(f"{node.url}/quiet", only_private).status_code == 200
    for reserved in ("api", "v1", "static", "datasets", "models", "lfs", "kernels"):
        answer = html(f"{node.url}/{reserved}")
        assert answer.status_code == 404 and "Not found" in answer.text, reserved
    assert "<h1>Search</h1>" in html(f"{node.url}/search").text  # not an owner's page
    assert httpx.get(f"{node.url}/status", timeout=30).status_code == 200
    assert httpx.get(f"{node.url}/api/models", timeout=30).status_code == 200
    assert httpx.get(f"{node.url}/metrics", timeout=30, follow_redirects=True).status_code == 200


def test_private_repos_are_404_pages_everywhere_for_others(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    sha = publish(api, "admin/vault", {"a.png": png(), "t.txt": b"secret"}, private=True)
    for path in (
        "/admin/vault",
        "/admin/vault?rev=main",
        "/admin/vault/tree/main",
        "/admin/vault/blob/main/t.txt",
        "/admin/vault/commits/main",
        f"/admin/vault/commit/{sha}",
    ):
        answer = html(node.url + path)
        assert answer.status_code == 404 and "secret" not in answer.text, path
        assert html(node.url + path, node.admin_token).status_code == 200, path
    assert html(f"{node.url}/admin").status_code == 404  # its owner's page has nothing to show
    assert "admin/vault" in html(f"{node.url}/admin", node.admin_token).text


def test_also_on_names_the_home_peers_and_mirrors_holding_the_repo(
    start_node: Callable[..., RunningNode],
) -> None:
    hub = start_node("hub")
    home = start_node("home", sync=FAST_SYNC, mirror={"interval": 0.05, "retry_initial": 0.1})
    replica = start_node("replica", sync=FAST_SYNC)
    with home.client(home.admin_token) as http:
        body = {"name": "hubmirror", "kind": "hf", "url": hub.url, "token": hub.admin_token}
        assert http.post("/v1/mirrors", json=body).status_code == 201
        peer = {"url": replica.url, "token": replica.admin_token}
        assert http.post("/v1/peers", json=peer).status_code == 201
    with replica.client(replica.admin_token) as http:
        peer = {"url": home.url, "token": home.admin_token}
        assert http.post("/v1/peers", json=peer).status_code == 201
    api = HfApi(endpoint=home.url, token=home.admin_token)
    sha = publish(api, "admin/spread", {"README.md": card({"kind": "lora"})})

    def pushed() -> bool:
        return home.runtime.mirrors.remote_commit("hubmirror", sha) is not None

    def peers_up(node: RunningNode) -> bool:
        return all(v.state == "up" for v in node.runtime.peers.views())

    wait_until(pushed, "the mirror holds the commit")
    wait_until(lambda: peers_up(home) and peers_up(replica), "peers up")
    wait_until(lambda: html(f"{replica.url}/admin/spread").status_code == 200, "replicated")
    on_home = html(f"{home.url}/admin/spread").text
    places = on_home[on_home.index('id="places"') :]
    assert f'<a href="{replica.url}/admin/spread">' in places and "replica" in places
    assert "hubmirror" in places and f'<a href="{hub.url}/admin/spread">' in places
    assert "replica-banner" not in on_home
    on_replica = html(f"{replica.url}/admin/spread").text
    places = on_replica[on_replica.index('id="places"') :]
    assert "home <b>home</b>" in places and f'<a href="{home.url}/admin/spread">' in places
    assert "replica-banner" not in on_replica  # the home is up
    assert "a copy of home's repo" in on_replica


HOSTILE = '<img src=x onerror="window.__pwned=1;alert(1)">'


def test_hostile_metadata_runs_nothing_in_a_browser(node: RunningNode, browser: Any) -> None:
    api = HfApi(endpoint=node.url, token=node.admin_token)
    front = {
        "kind": HOSTILE,
        "base_model": "<script>window.__pwned=2;alert(2)</script>",
        "license": HOSTILE,
        "tags": [HOSTILE, '"><svg onload="alert(3)">'],
        "trigger_words": [HOSTILE, "</code><script>alert(4)</script>"],
        "lineage": [{"repo": '"><svg/onload=alert(5)>', "method": HOSTILE}, {"hash": HOSTILE}],
    }
    training = {"ss_output_name": HOSTILE, "ss_tag_frequency": json.dumps({"x": {HOSTILE: 3}})}
    weights = safetensors({"w": ("F16", [2])}, training)
    hostile_image = '<img src=x onerror="alert(6)">.png'
    publish(
        api,
        "admin/evil",
        {
            "README.md": card(front),
            "w.safetensors": weights,
            hostile_image: png(),
            f"samples/{HOSTILE}.png": png(),
            "bad.safetensors": HOSTILE.encode(),
        },
    )
    publish(api, "admin/evil-child", {"README.md": card({"base_model": "admin/evil"})})
    node.runtime.scans.run_once()
    page = browser.new_page()
    dialogs: list[str] = []

    def opened(dialog: Any) -> None:
        dialogs.append(str(dialog.message))
        dialog.dismiss()

    page.on("dialog", opened)
    own = "script:not([src='/static/modelyard.js'])"
    for path in (
        "/admin/evil",
        "/admin/evil/tree/main",
        "/admin/evil/commits/main",
        "/admin/evil/blob/main/" + quote(hostile_image),
        "/admin/evil/blob/main/bad.safetensors",
        "/admin/evil-child",
        "/admin",
        "/search?q=evil",
    ):
        page.goto(node.url + path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__pwned") is None, path
        assert page.evaluate(f'document.querySelectorAll("{own}").length') == 0, path
        handlers = "[onerror], [onload], svg svg, img[src='x']"
        assert page.evaluate(f'document.querySelectorAll("{handlers}").length') == 0, path
    page.goto(f"{node.url}/admin/evil")
    words = page.locator("#trigger-words code").all_inner_texts()
    assert words == [HOSTILE, "</code><script>alert(4)</script>"]  # shown as text
    labels = page.locator("svg.lineage text").all_text_contents()
    assert '"><svg/onload=alert(5)>' in labels and HOSTILE in labels  # a name and a method
    assert page.locator("#gallery img").count() == 2
    assert dialogs == []


def test_pages_show_uploads_with_the_indexer_and_scanner_stopped(
    start_node: Callable[..., RunningNode], browser: Any
) -> None:
    node = start_node("still", index={"enabled": False}, scan={"enabled": False})
    api = HfApi(endpoint=node.url, token=node.admin_token)
    front = {"kind": "lora", "tags": ["zqfresh"], "trigger_words": ["zqtrigger"]}
    weights = safetensors({"w": ("F16", [2])}, {})
    publish(api, "admin/fresh", {"README.md": card(front), "w.safetensors": weights})
    publish(api, "admin/fresh-child", {"README.md": card({"base_model": "admin/fresh"})})
    by_hash = {"lineage": [{"hash": hashlib.sha256(weights).hexdigest()}]}
    publish(api, "admin/fresh-merge", {"README.md": card(by_hash)})
    repo = html(f"{node.url}/admin/fresh").text
    assert '<a href="/admin/fresh-merge">' in repo[repo.index("<svg") :]  # by a file's hash
    assert "<code data-copy>zqtrigger</code>" in repo
    assert 'class="badge scan-pending">pending</span>' in repo  # shown, not hidden
    assert 'href="/admin/fresh/resolve/main/w.safetensors" download' in repo
    assert '<a href="/admin/fresh-child">' in repo[repo.index("<svg") :]  # found unindexed
    author = html(f"{node.url}/admin").text
    assert '<a href="/admin/fresh">' in author and "not indexed yet" in author
    found = html(f"{node.url}/search?q=zqtrigger").text
    assert '<a href="/admin/fresh">' in found and "not indexed yet" in found
    assert '<span class="scan-pending">pending</span>' in found
    page = browser.new_page()
    for path, shown in (
        ("/admin/fresh", "zqtrigger"),
        ("/admin/fresh/blob/main/w.safetensors", "pending"),
        ("/search?q=zqtrigger", "not indexed yet"),
        ("/admin", "not indexed yet"),
        ("/", "admin/fresh"),
    ):
        answer = page.goto(node.url + path)
        assert answer is not None and answer.status == 200, path
        assert shown in page.locator("main").inner_text(), (path, shown)
    page.goto(node.url + "/admin/fresh")
    assert page.locator(".badge.scan-pending").first.is_visible()
