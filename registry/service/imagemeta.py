"""Generation metadata read from image files (PNG, JPEG, WebP) without decoding a pixel.

Pillow's readers are not used here, for reasons read in Pillow 13's source: PngImagePlugin
reads a whole tEXt chunk into memory whatever length it declares, `img.text` decodes the
pixels to reach chunks written after IDAT, and its text caps (MAX_TEXT_CHUNK, MAX_TEXT_MEMORY)
are module globals shared by every thread; WebPImagePlugin reads the whole file; opening a
JPEG parses its EXIF, and Pillow's TIFF reader reports corrupt EXIF through `warnings.warn`
(process-wide filter state). The three containers are simple, so this module walks their
chunks and segments itself: every read is checked against the file's size and a cap before
it happens, every loop is bounded by a count, compressed text is inflated to a cap and no
further. Chunks nobody asked for are skipped with a seek.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from registry.domain.comfyui import generation_from_prompt, load_graph
from registry.domain.errors import GenerationParseError
from registry.domain.generation import Generation, parse_parameters

MAX_TEXT_CHUNK = 8 * 1024 * 1024  # one text chunk, stored or inflated (ComfyUI graphs are big)
MAX_TEXT_TOTAL = 16 * 1024 * 1024  # all text kept from one file
MAX_EXIF = 1024 * 1024  # an EXIF block (a JPEG segment holds at most 64 KiB anyway)
MAX_CHUNKS = 20_000  # PNG chunks, WebP chunks or JPEG segments walked in one file
PNG_KEYS = ("parameters", "prompt", "workflow", "Comment")  # text chunks worth reading

_PNG = b"\x89PNG\r\n\x1a\n"
_KEYWORD_MAX = 80  # a PNG keyword is 1-79 bytes and a NUL
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class ImageMeta:
    """What one image file says about how it was made.

    `texts` holds the raw text used, by source name: PNG keywords (`parameters`, `prompt`,
    `workflow`, `Comment`), `UserComment` (EXIF) and `comment` (a JPEG COM segment).
    `generation` is parsed from A1111 parameters if any, else from the ComfyUI `prompt`
    graph. `problems` says what was skipped and why (a chunk over a cap, a bad CRC, a graph
    that is not JSON, a file cut short after its header).
    """

    format: str  # "png" | "jpeg" | "webp"
    width: int | None
    height: int | None
    texts: dict[str, str]
    generation: Generation | None
    comfy_prompt: dict[str, object] | None
    comfy_workflow: dict[str, object] | None
    problems: tuple[str, ...]


def read_generation(fp: BinaryIO, size: int) -> ImageMeta:
    """Read an image's generation metadata from `fp`, a seekable binary file of `size` bytes
    (read from offset 0, whatever its position; a real file is read with `os.pread`).

    Raises:
        GenerationParseError: not a PNG, JPEG or WebP, or broken before its dimensions.
    """
    fp.seek(0)
    head = fp.read(12)
    if head.startswith(_PNG):
        found, walk = _Found("png"), _png
    elif head.startswith(b"\xff\xd8\xff"):
        found, walk = _Found("jpeg"), _jpeg
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        found, walk = _Found("webp"), _webp
    else:
        raise _refused("not a PNG, JPEG or WebP file")
    try:
        walk(_Source(fp, size), found)
    except _Broken as exc:
        if found.width is None:
            raise _refused(f"{found.format}: {exc}") from None
        found.problems.append(str(exc))
    return _interpret(found)


def embedded_workflow(fp: BinaryIO, size: int) -> dict[str, object]:
    """The ComfyUI workflow an image holds: its UI graph (`workflow`), else its API graph
    (`prompt`), each already loaded under the graph caps.

    Raises:
        GenerationParseError: not an image, or one without a ComfyUI graph (the reason says
            why, a graph over its caps included).
    """
    meta = read_generation(fp, size)
    graph = meta.comfy_workflow or meta.comfy_prompt
    if graph is None:
        why = "; ".join(meta.problems) or "no `workflow` or `prompt` text chunk"
        raise _refused(f"{meta.format}: holds no ComfyUI workflow ({why})")
    return graph


def _refused(reason: str) -> GenerationParseError:
    return GenerationParseError(f"Unreadable image: {reason}", detail={"reason": reason})


class _Broken(Exception):
    """The container is cut short or malformed here; nothing after it can be trusted."""


class _Source:
    """Reads at an offset that never go past `size` (checked before reading). A file with a
    descriptor is read with `os.pread`: one system call a read, no seek, no buffer filled
    (walking a PNG's pixel chunks costs a small read each); other streams seek and read."""

    def __init__(self, fp: BinaryIO, size: int) -> None:
        self.fp, self.size, self.pos = fp, size, 0
        try:
            self.fd: int | None = fp.fileno()
        except (OSError, ValueError):  # io.UnsupportedOperation: BytesIO and the like
            self.fd = None

    @property
    def left(self) -> int:
        return self.size - self.pos

    def read(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise _Broken(f"{what} needs {n} bytes at offset {self.pos}, {self.left} remain")
        if self.fd is not None:
            data = os.pread(self.fd, n, self.pos)
        else:
            self.fp.seek(self.pos)
            data = self.fp.read(n)
        if len(data) != n:
            raise _Broken(f"file ends at offset {self.pos + len(data)}, in {what}")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.left:
            raise _Broken(f"{what} needs {n} bytes at offset {self.pos}, {self.left} remain")
        self.pos += n


@dataclass
class _Found:
    format: str
    width: int | None = None
    height: int | None = None
    texts: dict[str, str] = field(default_factory=dict)
    exif: bytes | None = None
    problems: list[str] = field(default_factory=list)
    text_bytes: int = 0

    def keep(self, key: str, raw: bytes, latin1: bool = False) -> None:
        """Keep a text (the first of each key) while the file's text budget lasts."""
        if key in self.texts:
            return
        if self.text_bytes + len(raw) > MAX_TEXT_TOTAL:
            self.problems.append(f"{key}: skipped, the file's text is over {MAX_TEXT_TOTAL} bytes")
            return
        self.text_bytes += len(raw)
        self.texts[key] = _decode(raw, latin1)


def _decode(raw: bytes, latin1: bool) -> str:
    """UTF-8 when it is valid: tools write UTF-8 into tEXt too, whose spec says Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1" if latin1 else "utf-8", "replace")


def _png(src: _Source, found: _Found) -> None:
    src.skip(len(_PNG), "signature")
    for _ in range(MAX_CHUNKS):
        length, kind = struct.unpack(">I4s", src.read(8, "a chunk header"))
        if length + 4 > src.left:
            name = kind.decode("latin-1")
            raise _Broken(f"{name} chunk declares {length} bytes, {src.left} remain")
        if kind == b"IDAT":  # most chunks of a file: skipped with the least work
            src.pos += length + 4
        elif kind == b"IHDR" and length >= 8:
            found.width, found.height = struct.unpack(">II", src.read(8, "IHDR"))
            src.skip(length - 8 + 4, "IHDR")
        elif kind in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
            _png_text(src, found, kind, length)
        elif kind == b"IEND":
            return
        else:
            src.skip(length + 4, kind.decode("latin-1"))
    found.problems.append(f"stopped after {MAX_CHUNKS} chunks")


def _png_text(src: _Source, found: _Found, kind: bytes, length: int) -> None:
    """One text or EXIF chunk: its keyword read first, its body only if wanted and capped."""
    name = kind.decode()
    head = src.read(min(length, _KEYWORD_MAX), name)
    keyword = "eXIf" if kind == b"eXIf" else head.partition(b"\0")[0].decode("latin-1")
    if keyword not in PNG_KEYS and kind != b"eXIf":
        src.skip(length - len(head) + 4, name)
        return
    if length > (MAX_EXIF if kind == b"eXIf" else MAX_TEXT_CHUNK):
        found.problems.append(f"{name} {keyword!r}: {length} bytes, over the cap")
        src.skip(length - len(head) + 4, name)
        return
    data = head + src.read(length - len(head), name)
    (crc,) = struct.unpack(">I", src.read(4, f"{name} CRC"))
    if zlib.crc32(kind + data) != crc:
        found.problems.append(f"{name} {keyword!r}: CRC mismatch, skipped")
        return
    try:
        body = _png_body(kind, data)
    except ValueError as exc:
        found.problems.append(f"{name} {keyword!r}: {exc}")
        return
    if kind == b"eXIf":
        found.exif = found.exif or body
    else:
        found.keep(keyword, body, latin1=kind != b"iTXt")


def _png_body(kind: bytes, data: bytes) -> bytes:
    if kind == b"eXIf":
        return data
    _, _, rest = data.partition(b"\0")
    if kind == b"tEXt":
        return rest
    if kind == b"zTXt":
        return _inflate(rest[1:])  # a method byte (0: zlib), then the stream
    compressed, rest = rest[:1] == b"\1", rest[2:]  # flag, method
    _language, _, rest = rest.partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return _inflate(text) if compressed else text


def _inflate(data: bytes) -> bytes:
    """zlib data inflated to MAX_TEXT_CHUNK at most: a bomb stops there."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, MAX_TEXT_CHUNK + 1)
    except zlib.error as exc:
        raise ValueError(f"bad zlib data ({exc})") from None
    if len(text) > MAX_TEXT_CHUNK or inflater.unconsumed_tail:
        raise ValueError(f"inflates past {MAX_TEXT_CHUNK} bytes, skipped")
    return text


def _jpeg(src: _Source, found: _Found) -> None:
    """Segments up to the start of scan: SOFn gives the size, APP1 EXIF, COM a comment."""
    src.skip(2, "SOI")
    for _ in range(MAX_CHUNKS):
        marker = src.read(2, "a marker")
        if marker[0] != 0xFF:
            raise _Broken(f"no JPEG marker at offset {src.pos - 2}")
        code = marker[1]
        if code == 0xFF:  # a fill byte: the marker code follows
            src.pos -= 1
            continue
        if code in (0xD9, 0xDA):  # end of image, start of scan: no metadata past here
            return
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # markers without a length
            continue
        (length,) = struct.unpack(">H", src.read(2, "a segment length"))
        if length < 2:
            raise _Broken(f"segment length {length} at offset {src.pos - 2}")
        _jpeg_segment(src, found, code, length - 2)
    found.problems.append(f"stopped after {MAX_CHUNKS} segments")


def _jpeg_segment(src: _Source, found: _Found, code: int, length: int) -> None:
    if code in _JPEG_SOF and length >= 5:
        data = src.read(length, "SOF")
        found.height, found.width = struct.unpack(">HH", data[1:5])
    elif code == 0xE1 and found.exif is None:
        data = src.read(length, "APP1")
        if data.startswith(b"Exif\0\0"):
            found.exif = data[6:]
    elif code == 0xFE:
        found.keep("comment", src.read(length, "COM"), latin1=True)
    else:
        src.skip(length, f"segment {code:#04x}")


def _webp(src: _Source, found: _Found) -> None:
    """RIFF chunks: VP8X, VP8 or VP8L give the size, EXIF its block."""
    (riff_size,) = struct.unpack("<4xI4x", src.read(12, "RIFF header"))
    end = min(src.size, 8 + riff_size)
    for _ in range(MAX_CHUNKS):
        if src.pos + 8 > end:
            return
        kind, length = struct.unpack("<4sI", src.read(8, "a chunk header"))
        padded = length + (length & 1)
        name = kind.decode("latin-1")
        if padded > src.left:
            raise _Broken(f"{name} chunk declares {length} bytes, {src.left} remain")
        if kind == b"EXIF" and found.exif is None and length <= MAX_EXIF:
            found.exif = src.read(length, "EXIF")
            src.skip(padded - length, "EXIF")
            continue
        if kind == b"EXIF" and length > MAX_EXIF:
            found.problems.append(f"EXIF: {length} bytes, over the cap of {MAX_EXIF}")
        head = src.read(min(length, 10), name)
        if found.width is None:
            found.width, found.height = _webp_size(kind, head)
        src.skip(padded - len(head), name)
    found.problems.append(f"stopped after {MAX_CHUNKS} chunks")


def _webp_size(kind: bytes, head: bytes) -> tuple[int | None, int | None]:
    if kind == b"VP8X" and len(head) >= 10:
        return 1 + int.from_bytes(head[4:7], "little"), 1 + int.from_bytes(head[7:10], "little")
    if kind == b"VP8 " and len(head) >= 10 and head[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(head) >= 5 and head[0] == 0x2F:
        (bits,) = struct.unpack("<I", head[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None, None


def _user_comment(exif: bytes) -> bytes | None:
    """EXIF tag 0x9286 (UserComment) from IFD0 or the Exif IFD it points to (0x8769).

    Only those two IFDs are read, and no next-IFD pointer is followed, so an IFD that
    points at itself or at IFD0 costs one extra read at most."""
    exif = exif.removeprefix(b"Exif\0\0")
    order = {b"II": "<", b"MM": ">"}.get(exif[:2])
    if order is None or len(exif) < 8:
        return None
    (ifd0,) = struct.unpack(order + "I", exif[4:8])
    entries = _ifd(exif, order, ifd0)
    if 0x9286 not in entries and 0x8769 in entries:
        (sub,) = struct.unpack(order + "I", exif[entries[0x8769][2] : entries[0x8769][2] + 4])
        entries = _ifd(exif, order, sub) if sub != ifd0 else {}
    if 0x9286 not in entries:
        return None
    _, count, at = entries[0x9286]
    if count > 4:
        (at,) = struct.unpack(order + "I", exif[at : at + 4])
    return exif[at : at + count] if at + count <= len(exif) else None


def _ifd(exif: bytes, order: str, offset: int) -> dict[int, tuple[int, int, int]]:
    """An IFD's entries: tag -> (type, count, offset of the value field)."""
    if offset + 2 > len(exif):
        return {}
    (count,) = struct.unpack_from(order + "H", exif, offset)
    count = min(count, (len(exif) - offset - 2) // 12)
    entries = {}
    for i in range(count):
        at = offset + 2 + 12 * i
        tag, kind, n = struct.unpack_from(order + "HHI", exif, at)
        entries[tag] = (kind, n, at + 8)
    return entries


def _comment_text(raw: bytes) -> bytes:
    """A UserComment as UTF-8: its 8-byte charset prefix says how it is encoded, and
    UNICODE is UTF-16 in either byte order (A1111, through piexif, writes big-endian)."""
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\0":
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            text = body.decode("utf-16", "replace")
        else:
            big = body[0::2].count(0) >= body[1::2].count(0)
            text = body.decode("utf-16-be" if big else "utf-16-le", "replace")
        return text.rstrip("\0").encode()
    if prefix in (b"ASCII\0\0\0", b"\0" * 8, b"JIS\0\0\0\0\0"):
        return body.rstrip(b"\0")
    return raw.rstrip(b"\0")


def _interpret(found: _Found) -> ImageMeta:
    if found.exif is not None:
        raw = _user_comment(found.exif)
        if raw:
            found.keep("UserComment", _comment_text(raw))
    graphs: dict[str, dict[str, object] | None] = {"prompt": None, "workflow": None}
    for key in graphs:
        if key in found.texts:
            try:
                graphs[key] = load_graph(found.texts[key], key)
            except GenerationParseError as exc:
                found.problems.append(exc.message)
    return ImageMeta(
        format=found.format,
        width=found.width,
        height=found.height,
        texts=found.texts,
        generation=_generation(found, graphs["prompt"]),
        comfy_prompt=graphs["prompt"],
        comfy_workflow=graphs["workflow"],
        problems=tuple(found.problems),
    )


def _generation(found: _Found, prompt: dict[str, object] | None) -> Generation | None:
    """A1111 parameters first (a PNG chunk, the EXIF comment, a comment holding settings),
    else the ComfyUI API graph."""
    texts = found.texts
    comments = [texts.get(k, "") for k in ("Comment", "comment")]
    candidates = [texts.get("parameters"), texts.get("UserComment")]
    candidates += [c for c in comments if "Steps: " in c]
    parameters = next((c for c in candidates if c), None)
    try:
        if parameters is not None:
            return parse_parameters(parameters)
        return generation_from_prompt(prompt) if prompt is not None else None
    except GenerationParseError as exc:
        found.problems.append(exc.message)
        return None
