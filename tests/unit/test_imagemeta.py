"""Generation metadata read from real image files made here with Pillow: PNG text chunks
(tEXt, zTXt, iTXt), ComfyUI's prompt and workflow chunks, JPEG and WebP EXIF UserComments;
and hostile files (cut short, chunks of hundreds of MB, zlib bombs, EXIF loops, JSON nested
100 000 deep or with a million nodes), each read in a subprocess that reports its time, its
peak RSS growth and the peak of what Python allocated (tracemalloc) while reading."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from registry.domain.errors import GenerationParseError
from registry.domain.generation import Resource
from registry.service import imagemeta
from registry.service.imagemeta import read_generation
from tests.unit.test_generation import A1111, api_graph

MB = 1024 * 1024
SECONDS_BOUND = 2.0
RSS_BOUND = 100 * MB
WORKFLOW = {
    "last_node_id": 9,
    "last_link_id": 9,
    "nodes": [
        {
            "id": 4,
            "type": "CheckpointLoaderSimple",
            "pos": [26, 474],
            "size": [315, 98],
            "flags": {},
            "order": 0,
            "mode": 0,
            "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0}],
            "properties": {"Node name for S&R": "CheckpointLoaderSimple"},
            "widgets_values": ["sd_xl_base.safetensors"],
        },
        {
            "id": 10,
            "type": "LoraLoader",
            "pos": [400, 474],
            "widgets_values": ["pixel-art-xl.safetensors", 0.8, 1],
        },
    ],
    "links": [[1, 4, 0, 10, 0, "MODEL"]],
    "groups": [],
    "config": {},
    "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
    "version": 0.4,
}


def image(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.effect_noise(size, 40).convert("RGB")


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def png_with(*texts: tuple[str, str, str]) -> bytes:
    """A PNG with text chunks, each (kind, key, value), written by Pillow."""
    info = PngImagePlugin.PngInfo()
    for kind, key, value in texts:
        if kind == "itxt":
            info.add_itxt(key, value, zip=True)
        else:
            info.add_text(key, value, zip=kind == "ztxt")
    return encode(image(), "PNG", pnginfo=info)


def read(data: bytes) -> imagemeta.ImageMeta:
    return read_generation(io.BytesIO(data), len(data))


def exif_comment(raw: bytes) -> Image.Exif:
    """EXIF holding `raw` as UserComment in the Exif IFD, written by Pillow."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = raw
    return exif


@pytest.mark.parametrize("kind", ["text", "ztxt", "itxt"])
def test_read_generation_reads_a1111_parameters_from_png_text_chunks(kind):
    meta = read(png_with((kind, "parameters", A1111), ("text", "Software", "x" * 1000)))
    assert (meta.format, meta.width, meta.height, meta.problems) == ("png", 64, 48, ())
    assert meta.texts == {"parameters": A1111}
    assert meta.generation is not None and meta.generation.source == "a1111"
    assert meta.generation.loras[0] == Resource("lora", "add_detail", "7c6bad76eb54", 0.6)
    assert meta.comfy_prompt is None and meta.comfy_workflow is None


def test_read_generation_reads_comfyui_prompt_and_workflow_chunks():
    data = png_with(
        ("text", "prompt", json.dumps(api_graph())), ("text", "workflow", json.dumps(WORKFLOW))
    )
    meta = read(data)
    assert meta.comfy_prompt == api_graph() and meta.comfy_workflow == WORKFLOW
    assert meta.generation is not None and meta.generation.source == "comfyui"
    assert meta.generation.checkpoint == Resource("checkpoint", "sd_xl_base.safetensors")
    assert meta.generation.loras == (Resource("lora", "pixel-art-xl.safetensors", None, 0.8),)
    assert meta.problems == ()


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize(
    "raw",
    [
        b"UNICODE\0" + A1111.encode("utf-16-be"),  # A1111 through piexif
        b"UNICODE\0" + A1111.encode("utf-16-le"),
        b"UNICODE\0" + A1111.encode("utf-16"),  # with a byte-order mark
        b"ASCII\0\0\0" + A1111.encode(),
    ],
    ids=["utf16be", "utf16le", "utf16bom", "ascii"],
)
def test_read_generation_reads_exif_user_comments(fmt, raw):
    meta = read(encode(image(), fmt, exif=exif_comment(raw)))
    assert (meta.format, meta.width, meta.height) == (fmt.lower(), 64, 48)
    assert meta.texts["UserComment"] == A1111
    assert meta.generation is not None and meta.generation.steps == 28


def big_endian_exif(comment: bytes) -> bytes:
    """EXIF laid out as piexif writes it: `Exif\\0\\0`, big-endian, IFD0 -> Exif IFD."""
    exif_ifd = 8 + 2 + 12 + 4
    data_at = exif_ifd + 2 + 12 + 4
    return (
        b"Exif\0\0MM\0*"
        + struct.pack(">I", 8)
        + struct.pack(">HHHII", 1, 0x8769, 4, 1, exif_ifd)
        + struct.pack(">I", 0)
        + struct.pack(">HHHII", 1, 0x9286, 7, len(comment), data_at)
        + struct.pack(">I", 0)
        + comment
    )


def test_read_generation_reads_a_piexif_block_in_a_webp_and_lossless_size():
    raw = b"UNICODE\0" + "prompt ✓\nSteps: 5, Seed: 6, Size: 7x8".encode("utf-16-be")
    meta = read(encode(image((33, 17)), "WEBP", lossless=True, exif=big_endian_exif(raw)))
    assert (meta.width, meta.height) == (33, 17)
    assert meta.generation is not None and meta.generation.prompt == "prompt ✓"


def test_read_generation_reads_parameters_from_comments():
    jpeg = read(encode(image(), "JPEG", comment=A1111.encode()))
    assert jpeg.texts == {"comment": A1111} and jpeg.generation is not None
    png = read(png_with(("text", "Comment", A1111)))
    assert png.generation is not None and png.generation.seed == 2876135290
    plain = read(encode(image(), "JPEG", comment=b"made by hand"))
    assert plain.texts == {"comment": "made by hand"} and plain.generation is None


def test_read_generation_reads_images_without_metadata():
    for fmt in ("PNG", "JPEG", "WEBP"):
        meta = read(encode(image((20, 10)), fmt))
        assert (meta.width, meta.height, meta.texts, meta.generation) == (20, 10, {}, None)


def test_read_generation_refuses_what_is_not_an_image():
    for data in (b"", b"GIF89a" + bytes(100), b"\x89PNG\r\n\x1a\n"):
        with pytest.raises(GenerationParseError) as exc:
            read(data)
        assert exc.value.code == "BadGenerationData" and exc.value.detail["reason"]


def test_read_generation_ignores_pillows_global_text_caps(monkeypatch):
    """Pillow's caps are module globals anyone may change; ours are not read from them."""
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_CHUNK", 10)
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 10)
    assert read(png_with(("ztxt", "parameters", A1111))).texts == {"parameters": A1111}


def test_read_generation_gives_the_same_answers_on_many_threads():
    files = [
        png_with(("ztxt", "parameters", A1111)),
        png_with(("text", "prompt", json.dumps(api_graph()))),
        encode(image(), "JPEG", exif=exif_comment(b"ASCII\0\0\0" + A1111.encode())),
        encode(image(), "WEBP", exif=exif_comment(b"UNICODE\0" + A1111.encode("utf-16-le"))),
    ] * 25
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(read, files))
    assert answers == [read(data) for data in files]


# Hostile files. Each builder writes one into a directory and says what the reader must
# answer: a problem or an error, matched on a substring.


def chunk(kind: bytes, data: bytes, length: int | None = None) -> bytes:
    length = len(data) if length is None else length
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", length) + kind + data + struct.pack(">I", crc)


def png_head(width: int = 64, height: int = 48) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return imagemeta._PNG + chunk(b"IHDR", ihdr)


def zeros_zlib(total: int) -> bytes:
    """A valid zlib stream of `total` zero bytes (a multiple of 1 MiB) in ~1 KB per MiB,
    built in milliseconds: after a full flush each MiB of zeros deflates to the same bytes."""
    zeros = bytes(MB)
    deflater = zlib.compressobj(9)
    first = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    unit = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    end = deflater.flush()[:-4] + struct.pack(">I", ((total % 65521) << 16) | 1)  # Adler-32
    return first + unit * (total // MB - 1) + end


def truncated_png(path: Path) -> str:
    data = encode(image((512, 512)), "PNG", pnginfo=_info("parameters", A1111))
    path.write_bytes(data[: len(data) * 3 // 5])
    return "remain"


def png_cut_in_header(path: Path) -> str:
    path.write_bytes(png_head()[:20])
    return "error:png: IHDR"


def huge_declared_text(path: Path) -> str:
    path.write_bytes(png_head() + chunk(b"tEXt", b"parameters\0abc", length=500 * MB))
    return "tEXt chunk declares 524288000 bytes"


def sparse_text_chunks(path: Path) -> str:
    """Two tEXt chunks of 300 MB each (sparse on disk): one wanted, one not."""
    with path.open("wb") as out:
        for key in (b"parameters", b"junk"):
            out.write(png_head() if key == b"parameters" else b"")
            out.write(struct.pack(">I", 300 * MB) + b"tEXt" + key + b"\0")
            out.seek(300 * MB - len(key) - 1 + 4, io.SEEK_CUR)  # the body and the CRC
        out.write(chunk(b"IEND", b""))
    return "'parameters': 314572800 bytes, over the cap"


def ztxt_bomb(path: Path) -> str:
    path.write_bytes(png_head() + chunk(b"zTXt", b"workflow\0\0" + zeros_zlib(1024 * MB)))
    return "zTXt 'workflow': inflates past"


def itxt_bomb(path: Path) -> str:
    body = b"parameters\0\1\0en\0\0" + zeros_zlib(1024 * MB)
    path.write_bytes(png_head() + chunk(b"iTXt", body))
    return "iTXt 'parameters': inflates past"


def _info(key: str, value: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    return info


def deep_json(path: Path) -> str:
    deep = "[" * 100_000 + "]" * 100_000
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", deep)
    info.add_text("workflow", '{"nodes": ' + deep + "}", zip=True)
    path.write_bytes(encode(image(), "PNG", pnginfo=info))
    return "ComfyUI workflow: nested deeper than 64"


def million_nodes(path: Path) -> str:
    workflow = '{"nodes": [' + ",".join(["{}"] * 1_000_000) + "]}"
    path.write_bytes(encode(image(), "PNG", pnginfo=_info_z("workflow", workflow)))
    return "ComfyUI workflow: over 400000 values"


def million_strings(path: Path) -> str:
    prompt = '{"1": [' + ",".join(['"x"'] * 1_000_000) + "]}"
    path.write_bytes(encode(image(), "PNG", pnginfo=_info_z("prompt", prompt)))
    return "ComfyUI prompt: over 400000 strings"


def _info_z(key: str, value: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, value, zip=True)
    return info


def _loop_exif() -> bytes:
    """IFD0 whose Exif IFD pointer and next-IFD pointer both lead back to IFD0, followed by
    an Exif IFD that points at itself twice over."""
    ifd0 = struct.pack("<HHHII", 1, 0x8769, 4, 1, 8) + struct.pack("<I", 8)
    looping = struct.pack("<HHHII", 1, 0x8769, 4, 1, 26) + struct.pack("<I", 26)
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd0 + looping


def exif_loop_jpeg(path: Path) -> str:
    jpeg = encode(image(), "JPEG")
    app1 = _loop_exif()
    path.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:])
    return "no comment"


def exif_loop_png(path: Path) -> str:
    exif = _loop_exif()[6:]
    exif = exif[:8] + struct.pack("<I", 26) + exif[12:]  # IFD0 is the self-pointing one now
    path.write_bytes(png_head() + chunk(b"eXIf", exif) + chunk(b"IEND", b""))
    return "no comment"


def jpeg_of_fill_bytes(path: Path) -> str:
    path.write_bytes(b"\xff\xd8" + b"\xff" * (8 * MB))
    return "stopped after"


def jpeg_cut_in_app1(path: Path) -> str:
    data = encode(image(), "JPEG", exif=exif_comment(b"ASCII\0\0\0" + A1111.encode()))
    path.write_bytes(data[:200])
    return "error:jpeg"


def webp_huge_chunk(path: Path) -> str:
    data = encode(image(), "WEBP", exif=exif_comment(b"ASCII\0\0\0x"))
    data += b"EXIF" + struct.pack("<I", 0xFFFFFFF0) + b"short"
    path.write_bytes(data[:4] + struct.pack("<I", 0xFFFFFFFF) + data[8:])
    return "EXIF chunk declares 4294967280 bytes"


PROBE = """
import json, os, resource, sys, time, tracemalloc
from registry.domain.errors import GenerationParseError
from registry.service.imagemeta import read_generation

def answer():
    with open(sys.argv[1], "rb") as fp:
        try:
            meta = read_generation(fp, os.fstat(fp.fileno()).st_size)
            return "; ".join(meta.problems) or ("comment" if meta.texts else "no comment")
        except GenerationParseError as exc:
            return "error:" + exc.detail["reason"]

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
first = answer()
seconds = time.perf_counter() - started
rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
tracemalloc.start()
assert answer() == first
print(json.dumps({
    "answer": first,
    "seconds": seconds,
    "rss_growth": rss_growth,
    "traced_peak": tracemalloc.get_traced_memory()[1],
}))
"""


@pytest.mark.parametrize(
    "build",
    [
        truncated_png,
        png_cut_in_header,
        huge_declared_text,
        sparse_text_chunks,
        ztxt_bomb,
        itxt_bomb,
        deep_json,
        million_nodes,
        million_strings,
        exif_loop_jpeg,
        exif_loop_png,
        jpeg_of_fill_bytes,
        jpeg_cut_in_app1,
        webp_huge_chunk,
    ],
)
def test_read_generation_answers_hostile_files_in_bounded_time_and_memory(tmp_path, build):
    path = tmp_path / "hostile"
    expected = build(path)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    report = json.loads(done.stdout)
    assert expected in report["answer"]
    assert report["seconds"] < SECONDS_BOUND, report
    assert report["rss_growth"] < RSS_BOUND, report
    assert report["traced_peak"] < RSS_BOUND, report
