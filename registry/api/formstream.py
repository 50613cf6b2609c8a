"""A browser's multipart form, read as it arrives: fields kept, files streamed into blobs.

Theory of operation: a multi-GB file picked in an upload form reaches the node as one
`multipart/form-data` body. Spooling it (Starlette's `request.form()`) would write it once to
a temporary file and again into the blob store, and would keep it in memory where /tmp is a
tmpfs. Here python-multipart's push parser only records what it saw (a field, a file's first
bytes, a part's end) while the request is read; the loop then feeds each file's bytes, in
pieces of at most `PIECE` bytes, to a blob writer on the threadpool, and completes the blob
(hashed on the way: BLAKE3, SHA-256) when its part ends. Memory stays at a piece per upload.

A form must send its small fields before its files (browsers send them in page order):
`path_of` (which checks CSRF, permissions and the file's path in the repo) runs before a
file's first byte is stored, so a refused form stores nothing. A body that stops early aborts
the file being written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from registry.api.limits import too_large
from registry.domain.digest import Hashes
from registry.domain.errors import InvalidError
from registry.service.uploads import UploadService
from registry.storage import BlobWriter, Expected

PIECE = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 64
MAX_FILES = 1000


@dataclass
class StreamedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, Hashes]] = field(default_factory=list)  # (path in repo, blob)


@dataclass
class _Events:
    """What the parser saw since the last look: ("field", name) | ("file", name) |
    ("data", bytes) | ("end", "") — in order."""

    seen: list[tuple[str, object]] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    header_field: bytes = b""
    header_value: bytes = b""
    finished: bool = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        def data(kind: str) -> Callable[[bytes, int, int], None]:
            def take(buffer: bytes, start: int, end: int) -> None:
                if kind == "field":
                    self.header_field += buffer[start:end]
                elif kind == "value":
                    self.header_value += buffer[start:end]
                else:
                    self.seen.append(("data", bytes(buffer[start:end])))

            return take

        def header_end() -> None:
            self.headers.append((self.header_field.lower(), self.header_value))
            self.header_field = self.header_value = b""

        def headers_finished() -> None:
            disposition = dict(self.headers).get(b"content-disposition", b"")
            _, options = parse_options_header(disposition)
            name = options.get(b"name", b"").decode("utf-8", "replace")
            filename = options.get(b"filename")
            if filename is None:
                self.seen.append(("field", name))
            else:
                self.seen.append(("file", filename.decode("utf-8", "replace")))
            self.headers = []

        def end() -> None:
            self.finished = True

        return {
            "on_header_field": data("field"),
            "on_header_value": data("value"),
            "on_header_end": header_end,
            "on_headers_finished": headers_finished,
            "on_part_data": data("part"),
            "on_end": end,
        }


class _Reader:
    def __init__(
        self,
        uploads: UploadService,
        path_of: Callable[[dict[str, str], str], str],
        max_file_bytes: int,
    ) -> None:
        self.form = StreamedForm()
        self._uploads = uploads
        self._path_of = path_of
        self._max = max_file_bytes
        self._field: str | None = None  # the field being read
        self._value = bytearray()
        self._file: str | None = None  # the file's path (None: skipped, or a field)
        self._writer: BlobWriter | None = None
        self._piece = bytearray()
        self._size = 0

    async def take(self, kind: str, value: object) -> None:
        if kind in ("field", "file", "end"):
            await self._close_part()
        if kind == "field":
            if len(self.form.fields) >= MAX_FIELDS:
                raise InvalidError(f"The form has more than {MAX_FIELDS} fields")
            self._field = str(value)
        elif kind == "file" and value:  # an empty file input sends a part named ""
            await self._open_file(str(value))
        elif kind == "data" and isinstance(value, bytes):
            await self._data(value)

    async def _open_file(self, name: str) -> None:
        path = self._path_of(self.form.fields, name)
        if len(self.form.files) >= MAX_FILES:
            raise InvalidError(f"Upload at most {MAX_FILES} files at once")
        self._file, self._size = path, 0
        self._writer = await run_in_threadpool(self._uploads.writer, None)

    async def _data(self, data: bytes) -> None:
        if self._field is not None:
            self._value += data
            if len(self._value) > MAX_FIELD_BYTES:
                raise InvalidError(f"Form field {self._field!r} is over {MAX_FIELD_BYTES} bytes")
        elif self._writer is not None:
            self._size += len(data)
            if self._max and self._size > self._max:
                raise too_large(
                    "max_blob_bytes",
                    f"{self._file} is over {self._max} bytes, the most one file may be",
                    file=self._file,
                    max=self._max,
                )
            self._piece += data
            if len(self._piece) >= PIECE:
                piece, self._piece = self._piece, bytearray()
                await run_in_threadpool(self._writer.write, piece)

    async def _close_part(self) -> None:
        if self._field is not None:
            self.form.fields[self._field] = self._value.decode("utf-8", "replace")
            self._field, self._value = None, bytearray()
        writer, name = self._writer, self._file
        if writer is not None and name is not None:
            await run_in_threadpool(writer.write, self._piece)
            self._writer, self._piece = None, bytearray()
            hashes = await run_in_threadpool(self._uploads.complete, writer, Expected())
            self.form.files.append((name, hashes))

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


async def read_form(
    request: Request,
    uploads: UploadService,
    path_of: Callable[[dict[str, str], str], str],
    max_file_bytes: int,
) -> StreamedForm:
    """Read a multipart form, storing its files as verified blobs (not yet in any commit).
    `path_of(fields so far, file name)` names where a file goes, or raises to refuse it.

    Raises:
        InvalidError: not a multipart form, a field too large, or the body ends early.
        TooLargeError: a file over `max_file_bytes` (0: no limit).
    """
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidError("Send the form as multipart/form-data")
    events = _Events()
    parser = MultipartParser(boundary, events.callbacks())  # type: ignore[arg-type]
    reader = _Reader(uploads, path_of, max_file_bytes)
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise InvalidError(f"The form's body is not valid multipart data: {exc}") from None
            seen, events.seen = events.seen, []
            for kind_seen, value in seen:
                await reader.take(kind_seen, value)
        if not events.finished:
            raise InvalidError("The form's body ended before its last part")
        await reader.take("end", "")
    except BaseException:
        reader.abort()
        raise
    return reader.form
