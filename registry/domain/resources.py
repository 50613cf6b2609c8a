"""How images name the model files they used, as keys a lookup can match: a file's base name
without its model extension (A1111 writes `Model: ponyDiffusionV6XL_v6` for
`ponyDiffusionV6XL_v6.safetensors`), and the hash strings generation tools write for a file."""

from __future__ import annotations

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # in any case
WORKFLOW_SUFFIXES = (".json",)  # read for a ComfyUI workflow (most JSON files hold none)
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")


def name_key(name: str) -> str:
    """A resource or file name as it is matched: base name, lower case, no model extension."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip().lower()
    for ext in MODEL_EXTENSIONS:
        if base.endswith(ext) and len(base) > len(ext):
            return base[: -len(ext)]
    return base


def file_names(key: str) -> list[str]:
    """The lower-case base names a file matching `key` may have (the key itself, if it kept
    an extension the list does not know, or with each model extension)."""
    return [key, *(key + ext for ext in MODEL_EXTENSIONS)]


def written_hashes(sha256: str, tail_sha256: str | None, autov1: str | None) -> set[str]:
    """Every hash string a tool may write for a file, in lower case: SHA-256 whole, AutoV2 (10
    hex) and A1111's 12-hex embedding hash; for safetensors files AutoV3 (12 hex of the
    SHA-256 after the header), that SHA-256 whole (kohya's) and AutoV1 (8 hex)."""
    found = {sha256, sha256[:10], sha256[:12]}
    if tail_sha256:
        found |= {tail_sha256, tail_sha256[:12]}
    if autov1:
        found.add(autov1)
    return {h.lower() for h in found if h}


def user_of(path: str) -> str:
    """What a file that names model files is: `workflow` (ComfyUI JSON) or `image`."""
    return "workflow" if path.lower().endswith(WORKFLOW_SUFFIXES) else "image"
