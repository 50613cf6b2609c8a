"""`/{repo}/raw/{rev}/{path}`: a file's bytes for the node's own pages (gallery images, image
previews) and for people opening the Hub's `raw` URLs in a browser.

Unlike `/resolve/`, the viewer may be a signed-in browser (its session cookie: a private repo's
owner sees its images) and a view is not counted as a download. The bytes are whatever the
uploader put there, served from the pages' own origin, so they are never rendered as a page:
images of a few raster types go out as images, anything else as plain text, the browser is
told not to guess (`nosniff`), and the answer's own policy sandboxes it and loads nothing.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from fastapi import APIRouter, Request, Response

from registry.api.deps import FilesDep
from registry.api.files import blob_response
from registry.api.paths import parse_repo, raw_segments
from registry.api.session import ViewerDep

router = APIRouter(include_in_schema=False)
IMAGE_TYPES = {  # never SVG: it can carry script
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
}


async def raw_file(request: Request, files: FilesDep, viewer: ViewerDep) -> Response:
    parts = raw_segments(request)
    plural = "datasets" if parts[0] == "datasets" and parts[3] == "raw" else "models"
    if plural == "datasets":
        parts = parts[1:]
    repo = parse_repo(plural, parts[0], parts[1])
    path = "/".join(parts[4:])
    file = await files.resolve(viewer, repo, parts[3], path, download=False)
    kind = IMAGE_TYPES.get(PurePosixPath(path).suffix.lower(), "text/plain; charset=utf-8")
    headers = {
        "Content-Type": kind,
        "ETag": f'"{file.entry.blake3.hex}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": "inline",
    }
    source = await files.source(file)
    return blob_response(source, headers, range_header=request.headers.get("range"), redirect=False)


for _prefix in ("", "/datasets"):
    router.get(_prefix + "/{namespace}/{name}/raw/{revision}/{path:path}")(raw_file)
