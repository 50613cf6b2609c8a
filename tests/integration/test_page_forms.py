"""Writing from the browser: sign in with a token, create a repo, upload files (streamed, with
a progress bar), edit the card's metadata and delete a file, in Debian's Chromium; and what is
refused: forms from another site, forms without the session's CSRF token, anonymous writes,
hostile file names, truncated bodies. Each refusal changes nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from tests.conftest import ADMIN_TOKEN, RunningNode
from tests.integration.test_federation_basic import wait_for

MB = 1_000_000
HOSTILE = '<img src=x onerror="window.__pwned=1">'


def signed_in(browser: Any, node: RunningNode, token: str = ADMIN_TOKEN) -> Any:
    page = browser.new_page()
    dialogs: list[str] = []

    def opened(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", opened)
    page.dialogs = dialogs
    page.goto(node.url + "/signin?next=/new")
    page.fill("#token", token)
    page.click("main button[type=submit]")
    page.wait_for_url(node.url + "/new")
    return page


@contextmanager
def session(node: RunningNode, token: str = ADMIN_TOKEN) -> Iterator[httpx.Client]:
    """A client holding a session cookie, as a browser does after signing in."""
    with httpx.Client(base_url=node.url, timeout=60) as http:
        answer = http.post("/signin", data={"token": token, "next": "/"})
        assert answer.status_code == 303, answer.text
        yield http


def csrf_of(http: httpx.Client, path: str) -> str:
    page = http.get(path).text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_sign_in_create_upload_edit_delete_and_see_it_on_a_replica(
    node: RunningNode, start_node: Callable[..., RunningNode], browser: Any, tmp_path: Path
) -> None:
    replica = start_node("replica", sync={"long_poll": 2, "probe_interval": 0.5})
    with replica.client(ADMIN_TOKEN) as http:
        assert http.post("/v1/peers", json={"url": node.url, "token": ADMIN_TOKEN}).is_success

    page = signed_in(browser, node)
    assert page.locator("header .who").inner_text() == "admin"
    page.fill("#name", "browser-lora")
    page.click("main button[type=submit]")
    page.wait_for_url(node.url + "/admin/browser-lora")

    weights = tmp_path / "w.safetensors"
    data = bytes(range(256)) * (50 * MB // 256)
    weights.write_bytes(data)
    page.click("text=Upload files")
    page.wait_for_url("**/upload/main")
    # the progress bar's values while the bytes go up (value reflects to its attribute)
    seen: list[float] = []
    page.expose_function("progressed", lambda value: seen.append(value))
    page.evaluate(
        """() => new MutationObserver(() => window.progressed(Number(document
            .querySelector('progress').getAttribute('value'))))
            .observe(document.querySelector('progress'),
                     {attributes: true, attributeFilter: ['value']})"""
    )
    # A network as a person's: 25 MB/s up (loopback sends 50 MB between two progress events).
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")
    conditions = {"offline": False, "latency": 5, "downloadThroughput": -1}
    network.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": 25 * MB})
    page.set_input_files("#files", str(weights))
    page.fill("#title", "Weights from the browser")
    page.click("main button[type=submit]")
    page.wait_for_url("**/commit/*", timeout=60_000)
    assert "Weights from the browser" in page.content() and "w.safetensors" in page.content()
    assert max(seen) == pytest.approx(len(data), rel=0.01), seen[-3:]
    moving = sorted({v for v in seen if 0 < v < 0.99 * len(data)})  # partway, not just done
    assert len(moving) >= 5, seen[:10]  # ~25 at 25 MB/s: one each 80 ms for 2 s
    network.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": -1})
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    info = api.model_info("admin/browser-lora", files_metadata=True)
    stored = {s.rfilename: s for s in info.siblings or []}["w.safetensors"]
    assert stored.size == len(data) and stored.lfs is not None
    assert stored.lfs.sha256 == hashlib.sha256(data).hexdigest()

    api.create_repo("admin/parent-mix")
    page.goto(node.url + "/admin/browser-lora/edit")
    page.select_option("#kind", "lora")
    page.fill("#base_model", "stabilityai/sdxl-base")
    page.fill("#license", "openrail")
    page.fill("#trigger_words", f"wtrcolor style\n{HOSTILE}")
    page.fill("#tags", f"watercolor, {HOSTILE}")
    page.fill("#lineage", "admin/parent-mix")
    page.click("main button[type=submit]")
    page.wait_for_url("**/commit/*")
    page.goto(node.url + "/admin/browser-lora")
    text = page.locator("main").inner_text()
    assert "lora" in text and "stabilityai/sdxl-base" in text and "wtrcolor style" in text
    assert "openrail" in text
    assert page.locator("svg.lineage a[href='/admin/parent-mix']").count() == 1
    assert HOSTILE in text  # shown as text, never run
    assert page.evaluate("window.__pwned") is None
    card = api.hf_hub_download("admin/browser-lora", "README.md", cache_dir=tmp_path / "c")
    front = yaml.safe_load(Path(card).read_text().split("---")[1])
    assert front["kind"] == "lora" and front["base_model"] == "stabilityai/sdxl-base"
    assert front["license"] == "openrail" and front["tags"] == ["watercolor", HOSTILE]
    assert front["trigger_words"] == ["wtrcolor style", HOSTILE]
    assert front["lineage"] == [{"repo": "admin/parent-mix"}]

    page.goto(node.url + "/admin/browser-lora/blob/main/w.safetensors")
    page.click("text=Delete this file")
    page.click("button.danger")
    page.wait_for_url("**/commit/*")
    assert "removed" in page.content()
    assert not api.file_exists("admin/browser-lora", "w.safetensors")
    assert page.dialogs == []

    head = api.model_info("admin/browser-lora").sha
    wait_for(lambda: replica_head(replica, "admin/browser-lora") == head, timeout=60)
    page.goto(replica.url + "/admin/browser-lora")
    text = page.locator("main").inner_text()
    assert "stabilityai/sdxl-base" in text and "wtrcolor style" in text
    assert page.locator("svg.lineage a[href='/admin/parent-mix']").count() == 1
    assert "home node" in text  # writes are pointed at the home
    assert page.evaluate("window.__pwned") is None


def replica_head(replica: RunningNode, repo: str) -> str | None:
    answer = httpx.get(f"{replica.url}/api/models/{repo}", timeout=10)
    return answer.json().get("sha") if answer.status_code == 200 else None


def serving(body: str) -> Callable[[Any], None]:
    """A route handler answering with `body` (a page of another site)."""
    return lambda route: route.fulfill(status=200, content_type="text/html", body=body)


def test_every_form_posted_from_another_site_is_refused(
    node: RunningNode, browser: Any, make_token: Callable[..., str]
) -> None:
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    api.create_repo("admin/target")
    api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="admin/target")
    head = api.model_info("admin/target").sha
    mallory = make_token("mallory")
    page = signed_in(browser, node)
    forms: list[tuple[str, dict[str, str], str]] = [  # each form of the pages, as planted
        ("/new", {"owner": "admin", "name": "planted"}, "application/x-www-form-urlencoded"),
        ("/admin/target/upload/main", {"folder": "x"}, "multipart/form-data"),
        ("/admin/target/edit", {"kind": "lora", "tags": "planted"}, "multipart/form-data"),
        ("/admin/target/delete/main/a.txt", {}, "application/x-www-form-urlencoded"),
        ("/admin/target/access", {"action": "ask"}, "application/x-www-form-urlencoded"),
        ("/signout", {}, "application/x-www-form-urlencoded"),
        ("/signin", {"token": mallory, "next": "/"}, "application/x-www-form-urlencoded"),
    ]
    for i, (action, fields, enctype) in enumerate(forms):
        inputs = "".join(
            f'<input name="{k}" value="{v}">' for k, v in {**fields, "csrf": "guessed"}.items()
        )
        planted = f"""<form method="post" action="{node.url}{action}" enctype="{enctype}"
            id="f">{inputs}</form><script>document.getElementById('f').submit()</script>"""
        evil = f"http://evil.test/{i}"
        page.route(evil, serving(planted))
        with page.expect_response(f"{node.url}{action}") as answer:
            page.goto(evil)
        assert answer.value.status == 403, action
        assert "CrossOriginRefused" in page.content(), action
    assert not api.repo_exists("admin/planted")
    assert api.model_info("admin/target").sha == head  # no upload, edit or delete
    page.goto(node.url + "/")
    assert page.locator("header .who").inner_text() == "admin"  # not signed out, nor as mallory
    assert page.dialogs == []


def test_session_cookie_and_csrf_rules(
    node: RunningNode, start_node: Callable[..., RunningNode], make_token: Callable[..., str]
) -> None:
    with httpx.Client(base_url=node.url) as http:
        refused = http.post("/signin", data={"token": "myd_wrong", "next": "/"})
        assert refused.status_code == 401 and "Invalid credentials" in refused.text
        assert "modelyard_session" not in refused.headers.get("set-cookie", "")
        assert http.get("/new").status_code == 303  # to the sign-in page
        anonymous = http.post("/new", data={"owner": "admin", "name": "x"})
        assert anonymous.status_code == 401

    with session(node) as http:
        cookie = next(c for c in http.cookies.jar if c.name == "modelyard_session")
        assert cookie.has_nonstandard_attr("HttpOnly") and not cookie.secure
        raw = http.post("/signin", data={"token": ADMIN_TOKEN}).headers["set-cookie"]
        assert "samesite=lax" in raw.lower() and "httponly" in raw.lower()
        # the cookie never authenticates the API
        assert http.get("/api/whoami-v2").status_code == 401
        no_token = http.post("/new", data={"owner": "admin", "name": "no-token"})
        assert no_token.status_code == 403 and "CsrfTokenInvalid" in no_token.text
        made = http.post(
            "/new", data={"owner": "admin", "name": "ok", "csrf": csrf_of(http, "/new")}
        )
        assert made.status_code == 303 and made.headers["location"] == "/admin/ok"
        taken = http.post(
            "/new", data={"owner": "admin", "name": "ok", "csrf": csrf_of(http, "/new")}
        )
        assert taken.status_code == 409 and "already created" in taken.text
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    assert api.repo_exists("admin/ok") and not api.repo_exists("admin/no-token")

    # another user's session may not write to admin's repo, whatever the form says
    with session(node, make_token("bob")) as http:
        csrf = csrf_of(http, "/new")
        other = http.post("/new", data={"owner": "admin", "name": "bobs", "csrf": csrf})
        assert other.status_code == 403
        files = {"files": ("x.bin", b"x")}
        upload = http.post("/admin/ok/upload/main", data={"csrf": csrf}, files=files)
        assert upload.status_code == 403
    assert not api.repo_exists("admin/bobs")

    secure = start_node("secure", public_url="https://models.example.org")
    with httpx.Client(base_url=secure.url) as http:
        signed = http.post("/signin", data={"token": ADMIN_TOKEN, "next": "/"})
        assert "secure" in signed.headers["set-cookie"].lower()


def blob_count(node: RunningNode) -> int:
    count: int = httpx.get(node.url + "/v1/status", timeout=10).json()["blobs"]
    return count


def test_bad_uploads_are_refused_and_store_nothing(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    api.create_repo("admin/target")
    head = api.model_info("admin/target").sha
    with session(node) as http:
        csrf = csrf_of(http, "/admin/target/upload/main")
        before = blob_count(node)
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"data": {}, "files": {"files": ("a.bin", b"a" * 10)}}, 403, "CsrfTokenInvalid"),
            ({"data": {"csrf": csrf}, "files": {"files": ("", b"")}}, 400, "at least one file"),
            ({"data": {"csrf": csrf, "folder": "../.."}, "files": {"files": ("a", b"a")}}, 422, ""),
            ({"content": b"not a form", "headers": {"content-type": "text/plain"}}, 400, ""),
        ]
        for kwargs, status, text in cases:
            answer = http.post("/admin/target/upload/main", **kwargs)
            assert answer.status_code == status, (kwargs, answer.text)
            assert text in answer.text
        unknown = http.post(
            "/admin/target/upload/nope", data={"csrf": csrf}, files={"files": ("a", b"a")}
        )
        assert unknown.status_code == 404
        # a body that stops in the middle of a file
        boundary = "b0undary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="t.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + b"t" * 100_000
        cut = http.post(
            "/admin/target/upload/main",
            content=body,
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert cut.status_code == 400 and "ended before" in cut.text
        assert blob_count(node) == before  # nothing stored, not even the partial file
        json_error = http.post(
            "/admin/target/upload/main",
            data={},
            files={"files": ("a.bin", b"a")},
            headers={"accept": "application/json"},
        )
        assert json_error.json()["code"] == "CsrfTokenInvalid"
    assert api.model_info("admin/target").sha == head  # no commit was made


def test_small_files_are_regular_and_a_folder_is_kept(node: RunningNode) -> None:
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    api.create_repo("admin/samples")
    with session(node) as http:
        csrf = csrf_of(http, "/admin/samples/upload/main")
        files = [("files", ("a.txt", b"hello")), ("files", ("b.safetensors", b"\x00" * 16))]
        answer = http.post(
            "/admin/samples/upload/main",
            data={"csrf": csrf, "folder": "samples"},
            files=files,
            headers={"accept": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["files"] == ["samples/a.txt", "samples/b.safetensors"]
    info = {
        s.rfilename: s for s in api.model_info("admin/samples", files_metadata=True).siblings or []
    }
    assert info["samples/a.txt"].lfs is None  # as the Hub client would have sent it
    assert info["samples/b.safetensors"].lfs is not None  # LFS by .gitattributes


def test_a_browser_upload_meets_the_apis_size_limit_and_says_so(
    start_node: Callable[..., RunningNode], browser: Any, tmp_path: Path
) -> None:
    node = start_node("sized", limits={"max_blob_bytes": 100_000})
    api = HfApi(endpoint=node.url, token=ADMIN_TOKEN)
    api.create_repo("admin/sized")
    head, before = api.model_info("admin/sized").sha, blob_count(node)
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * 100_001)
    with pytest.raises(HfHubHTTPError) as refused:  # the API's answer, for comparison
        api.upload_file(path_or_fileobj=str(big), path_in_repo="big.bin", repo_id="admin/sized")
    assert refused.value.response.status_code == 413

    page = signed_in(browser, node)
    page.goto(node.url + "/admin/sized/upload/main")
    page.set_input_files("#files", str(big))
    page.click("main button[type=submit]")
    problem = page.locator("#problem")
    problem.wait_for(state="visible")
    assert problem.inner_text().startswith("PayloadTooLarge: "), problem.inner_text()
    assert "max_blob_bytes" in problem.inner_text()
    assert page.url == node.url + "/admin/sized/upload/main"  # stayed, to try again
    assert api.model_info("admin/sized").sha == head and blob_count(node) == before
    with session(node) as http:
        csrf = csrf_of(http, "/admin/sized/upload/main")
        files = {"files": ("big.bin", big.read_bytes())}
        answer = http.post("/admin/sized/upload/main", data={"csrf": csrf}, files=files)
    assert answer.status_code == 413 and answer.headers["X-Modelyard-Limit"] == "max_blob_bytes"
    assert api.model_info("admin/sized").sha == head and blob_count(node) == before
