"""Image metadata benchmark: `read_generation` over 10 000 mixed images against Pillow merely
opening the same files (`Image.open` + `.size`, no pixel decoded), in the same run.

Run: `.venv/bin/python bench/images.py [--images 10000] [--reps 3]` (`--no-record` to skip
RESULTS.md). The fixture is built once into bench/.work/images-v1/: PNGs with A1111/Forge
parameters (tEXt, some iTXt and zTXt), PNGs with ComfyUI `prompt` and `workflow`, JPEGs and
WebPs with an A1111 EXIF UserComment (UTF-16, as piexif writes it), and some of each with no
metadata. A few base images are encoded by Pillow; each file gets its own metadata spliced
into their chunks, so building takes seconds. The files are read once before timing (page
cache warm), then each rep times both readers over every file, each in a fresh subprocess
(its peak RSS is reported), alternating which goes first. Goal: >= 0.8x Pillow's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import struct
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import append_results, git_version

WORK = Path(__file__).with_name(".work")
FIXTURE_VERSION = 2
SIZES = [(512, 512), (512, 768), (768, 512)]
# Twenty slots: the mix of kinds, repeated.
KINDS = (["png-a1111"] * 6 + ["png-comfyui"] * 5 + ["jpeg-exif"] * 3 + ["webp-exif"] * 3) + [
    "png-none",
    "jpeg-none",
    "webp-none",
]
WORDS = (
    "masterpiece best quality portrait landscape castle dragon knight neon city forest ocean "
    "watercolor ink sketch cinematic lighting detailed eyes smile night rain sunset robot witch "
    "samurai flowers gothic retro pastel oil painting highly detailed sharp focus bokeh"
).split()
LORAS = [f"{w}_{i}" for i, w in enumerate(WORDS[:40])]
CHECKPOINTS = ["v1-5-pruned-emaonly", "sd_xl_base_1.0", "realisticVisionV60B1_v51VAE", "ponyV6"]


def words(rng: random.Random, low: int, high: int) -> str:
    return ", ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def a1111_text(rng: random.Random) -> str:
    loras = rng.sample(LORAS, rng.randint(0, 4))
    tags = " ".join(f"<lora:{name}:{rng.choice([0.4, 0.6, 0.8, 1])}>" for name in loras)
    hashes = ", ".join(f"{name}: {rng.getrandbits(48):012x}" for name in loras)
    settings = [
        f"Steps: {rng.randint(20, 40)}",
        "Sampler: DPM++ 2M",
        "Schedule type: Karras",
        f"CFG scale: {rng.choice([5, 6.5, 7])}",
        f"Seed: {rng.getrandbits(32)}",
        f"Size: {rng.choice(SIZES)[0]}x{rng.choice(SIZES)[1]}",
        f"Model hash: {rng.getrandbits(40):010x}",
        f"Model: {rng.choice(CHECKPOINTS)}",
        "Denoising strength: 0.45",
        "Hires upscale: 2",
        "Hires upscaler: 4x-UltraSharp",
    ]
    if hashes:
        settings.append(f'Lora hashes: "{hashes}"')
    if rng.random() < 0.5:
        settings.append(f'TI hashes: "easynegative: {rng.getrandbits(48):012x}"')
    if rng.random() < 0.2:
        settings.append(
            'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], '
            'Weight: 1, Resize Mode: Crop and Resize, Processor Res: 512, Control Mode: Balanced"'
        )
    settings.append("Version: v1.10.1")
    return f"{words(rng, 20, 60)} {tags}\nNegative prompt: {words(rng, 10, 30)}\n" + ", ".join(
        settings
    )


def comfyui_graphs(rng: random.Random) -> tuple[str, str]:
    """An API-format prompt and a UI-format workflow of the same graph (ComfyUI's SaveImage
    writes both with json.dumps)."""
    lora_count = rng.randint(0, 3)
    prompt: dict[str, object] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": words(rng, 20, 50)}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": words(rng, 5, 20)}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": rng.getrandbits(48),
                "steps": 25,
                "cfg": 6.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "denoise": 1,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}},
    }
    for i in range(lora_count):
        prompt[str(10 + i)] = {
            "class_type": "LoraLoader",
            "inputs": {"lora_name": f"{rng.choice(LORAS)}.safetensors", "strength_model": 0.8},
        }
    nodes = [
        {
            "id": int(node_id),
            "type": node["class_type"],  # type: ignore[index]
            "pos": [rng.randint(0, 2000), rng.randint(0, 1000)],
            "size": [315, 98],
            "flags": {},
            "order": n,
            "mode": 0,
            "inputs": [
                {"localized_name": name, "name": name, "type": "INT", "widget": {"name": name}}
                for name in node["inputs"]  # type: ignore[index]
            ],
            "outputs": [
                {"localized_name": "MODEL", "name": "MODEL", "type": "MODEL", "links": [n + 1]}
            ],
            "properties": {
                "cnr_id": "comfy-core",
                "ver": "0.3.40",
                "Node name for S&R": node["class_type"],  # type: ignore[index]
            },
            "widgets_values": [
                v
                for v in node["inputs"].values()  # type: ignore[index]
                if not isinstance(v, list)
            ],
        }
        for n, (node_id, node) in enumerate(prompt.items())
    ]
    workflow = {
        "last_node_id": 20,
        "last_link_id": 20,
        "nodes": nodes,
        "links": [[n, n, 0, n + 1, 0, "MODEL"] for n in range(len(nodes))],
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
        "version": 0.4,
    }
    return json.dumps(prompt), json.dumps(workflow)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_text(rng: random.Random, key: str, value: str) -> bytes:
    pick = rng.random()
    if pick < 0.7:
        return png_chunk(b"tEXt", key.encode() + b"\0" + value.encode("latin-1", "replace"))
    if pick < 0.85:
        return png_chunk(b"zTXt", key.encode() + b"\0\0" + zlib.compress(value.encode()))
    return png_chunk(b"iTXt", key.encode() + b"\0\0\0\0\0" + value.encode())


def exif_block(comment: str) -> bytes:
    """A piexif-style EXIF block (big-endian, IFD0 -> Exif IFD -> UserComment in UTF-16)."""
    raw = b"UNICODE\0" + comment.encode("utf-16-be")
    return (
        b"MM\0*"
        + struct.pack(">I", 8)
        + struct.pack(">HHHII", 1, 0x8769, 4, 1, 26)
        + struct.pack(">I", 0)
        + struct.pack(">HHHII", 1, 0x9286, 7, len(raw), 44)
        + struct.pack(">I", 0)
        + raw
    )


def base_images() -> dict[str, list[bytes]]:
    """A few images per format, encoded by Pillow: a gradient with noise, SD-sized."""
    from PIL import Image

    bases: dict[str, list[bytes]] = {"png": [], "jpeg": [], "webp": []}
    for k, size in enumerate(SIZES):
        gradient = Image.linear_gradient("L").resize(size)
        noise = Image.effect_noise(size, 12 + 8 * k)
        img = Image.merge(
            "RGB", (gradient, noise, gradient.transpose(Image.Transpose.ROTATE_90).resize(size))
        )
        for fmt, options in (("png", {}), ("jpeg", {"quality": 90}), ("webp", {"quality": 85})):
            path = WORK / f"base.{fmt}"
            img.save(path, fmt.upper(), **options)
            bases[fmt].append(path.read_bytes())
    return bases


def with_metadata(kind: str, base: bytes, rng: random.Random) -> bytes:
    if kind == "png-a1111":
        return base[:33] + png_text(rng, "parameters", a1111_text(rng)) + base[33:]
    if kind == "png-comfyui":
        prompt, workflow = comfyui_graphs(rng)
        chunks = png_text(rng, "prompt", prompt) + png_text(rng, "workflow", workflow)
        return base[:33] + chunks + base[33:]
    if kind == "jpeg-exif":
        app1 = b"Exif\0\0" + exif_block(a1111_text(rng))
        after_app0 = 4 + struct.unpack(">H", base[4:6])[0]
        segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
        return base[:after_app0] + segment + base[after_app0:]
    if kind == "webp-exif":
        return webp_with_exif(base, exif_block(a1111_text(rng)))
    return base


def webp_with_exif(base: bytes, exif: bytes) -> bytes:
    """A simple (VP8) WebP made extended: VP8X with the EXIF flag, the image, an EXIF chunk."""
    vp8 = base[12:]
    width, height = (v & 0x3FFF for v in struct.unpack("<HH", vp8[14:18]))
    vp8x = bytes([0x08, 0, 0, 0]) + (width - 1).to_bytes(3, "little")
    vp8x += (height - 1).to_bytes(3, "little")
    exif_chunk = b"EXIF" + struct.pack("<I", len(exif)) + exif + b"\0" * (len(exif) & 1)
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + vp8x + vp8 + exif_chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def build_fixture(target: Path, count: int) -> list[dict[str, object]]:
    bases = base_images()
    rng = random.Random(FIXTURE_VERSION)
    target.mkdir(parents=True)
    files = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        fmt = kind.split("-")[0]
        data = with_metadata(kind, rng.choice(bases[fmt]), rng)
        name = f"{i:05d}.{fmt}"
        (target / name).write_bytes(data)
        files.append({"name": name, "kind": kind, "size": len(data)})
    (target / "files.json").write_text(json.dumps(files))
    return files


def fixture(count: int) -> tuple[Path, list[dict[str, object]]]:
    target = WORK / f"images-v{FIXTURE_VERSION}-{count}"
    if not (target / "files.json").exists():
        started = time.perf_counter()
        if target.exists():
            for stale in target.iterdir():
                stale.unlink()
            target.rmdir()
        build_fixture(target, count)
        print(f"  fixture: {count} images in {time.perf_counter() - started:.1f} s", flush=True)
    return target, json.loads((target / "files.json").read_text())


def measure(reader: str, directory: Path) -> dict[str, object]:
    """Runs in a fresh subprocess: one reader over every file of the fixture."""
    files = json.loads((directory / "files.json").read_text())
    if reader == "ours":
        from registry.service.imagemeta import read_generation

        def read(path: Path, size: int) -> str:
            with path.open("rb") as fp:
                meta = read_generation(fp, size)
            assert not meta.problems, (path, meta.problems)
            return meta.generation.source if meta.generation is not None else "none"
    else:
        from PIL import Image

        def read(path: Path, size: int) -> str:  # noqa: ARG001  # the same signature
            with Image.open(path) as img:
                return f"{img.size[0]}x{img.size[1]}"

    seconds: dict[str, float] = {}
    found: dict[str, int] = {}
    for entry in files:
        started = time.perf_counter()
        answer = read(directory / entry["name"], entry["size"])
        seconds[entry["kind"]] = seconds.get(entry["kind"], 0.0) + time.perf_counter() - started
        found[answer] = found.get(answer, 0) + 1
    return {
        "seconds": sum(seconds.values()),
        "by_kind": seconds,
        "found": found,
        "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def run_child(reader: str, directory: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", reader, "--dir", str(directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--measure", choices=["ours", "pillow"])
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.dir)))
        return
    WORK.mkdir(exist_ok=True)
    directory, files = fixture(args.images)
    total = sum(int(f["size"]) for f in files)
    for f in files:  # into the page cache: both readers then find every file there
        (directory / str(f["name"])).read_bytes()
    load = [os.getloadavg()[0]]
    runs: dict[str, list[dict[str, object]]] = {"ours": [], "pillow": []}
    for rep in range(args.reps):
        order = ["ours", "pillow"] if rep % 2 == 0 else ["pillow", "ours"]
        for reader in order:
            runs[reader].append(run_child(reader, directory))
        rates = {r: len(files) / float(runs[r][-1]["seconds"]) for r in runs}  # type: ignore[arg-type]
        print(f"  rep {rep + 1}: ours {rates['ours']:.0f}/s, Pillow open {rates['pillow']:.0f}/s")
    load.append(os.getloadavg()[0])
    section = report(args, files, total, runs, load)
    print(section)
    if not args.no_record:
        append_results(section)


def report(
    args: argparse.Namespace,
    files: list[dict[str, object]],
    total: int,
    runs: dict[str, list[dict[str, object]]],
    load: list[float],
) -> str:
    count = len(files)
    rate = {r: [count / float(run["seconds"]) for run in runs[r]] for r in runs}  # type: ignore[arg-type]
    ratios = [o / p for o, p in zip(rate["ours"], rate["pillow"], strict=True)]
    mix = {k: sum(1 for f in files if f["kind"] == k) for k in dict.fromkeys(KINDS)}
    kinds = ", ".join(f"{n} {k}" for k, n in mix.items())
    per_kind = []
    for kind, n in mix.items():
        ours = statistics.median(float(run["by_kind"][kind]) for run in runs["ours"])  # type: ignore[index]
        pillow = statistics.median(float(run["by_kind"][kind]) for run in runs["pillow"])  # type: ignore[index]
        per_kind.append(f"| {kind} | {n / ours:,.0f} | {n / pillow:,.0f} | {pillow / ours:.2f}x |")
    png_jpeg = [k for k in mix if not k.startswith("webp")]
    count_pj = sum(mix[k] for k in png_jpeg)
    rate_pj = {
        r: statistics.median(
            count_pj / sum(float(run["by_kind"][k]) for k in png_jpeg)  # type: ignore[index]
            for run in runs[r]
        )
        for r in runs
    }
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"bench/images.py --images {args.images} --reps {args.reps}"
    found = runs["ours"][0]["found"]
    return "\n".join(
        [
            f"\n## Image metadata ({now}, `{command}`)\n",
            f"- git {git_version()}; {count} images, {total / 1e6:.0f} MB ({kinds}); "
            "SD-sized (512x512, 512x768, 768x512), files in the page cache; each reader in a "
            "fresh process per rep, alternating which goes first, run at nice 10.",
            f"- `read_generation`: median **{statistics.median(rate['ours']):,.0f} images/s** "
            f"({', '.join(f'{r:,.0f}' for r in rate['ours'])}), peak RSS "
            f"{max(int(r['rss']) for r in runs['ours']) / 2**20:.0f} MiB; "  # type: ignore[call-overload]
            f"found {json.dumps(found)}, no problems reported.",
            f"- Pillow `Image.open` + `.size`: median {statistics.median(rate['pillow']):,.0f} "
            f"images/s ({', '.join(f'{r:,.0f}' for r in rate['pillow'])}), peak RSS "
            f"{max(int(r['rss']) for r in runs['pillow']) / 2**20:.0f} MiB.",  # type: ignore[call-overload]
            f"- ratio: median **{statistics.median(ratios):.2f}x** Pillow's open rate "
            f"({', '.join(f'{r:.2f}' for r in ratios)}; goal >= 0.8x). 1-minute load average "
            f"at start / end: {load[0]:.2f} / {load[1]:.2f} (2 cores).",
            f"- PNG and JPEG only (Pillow opens a WebP by reading the whole file into libwebp's "
            f"demuxer, which favours us above): ours {rate_pj['ours']:,.0f} images/s, Pillow "
            f"{rate_pj['pillow']:,.0f} images/s, **{rate_pj['ours'] / rate_pj['pillow']:.2f}x**.\n",
            "| kind | ours, images/s | Pillow open, images/s | ratio |",
            "|---|---|---|---|",
            *per_kind,
            "",
        ]
    )


if __name__ == "__main__":
    main()
