"""`.gitattributes` LFS patterns and `.gitignore` matching, as the Hub applies them."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pathspec

_LFS_EXTENSIONS = (
    "7z arrow bin bz2 ckpt ftz gz h5 joblib mlmodel model msgpack npy npz onnx ot parquet pb "
    "pickle pkl pt pth rar safetensors tar tflite tgz wasm xz zip zst gguf"
).split()

DEFAULT_GITATTRIBUTES = (
    "".join(f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in _LFS_EXTENSIONS)
    + "saved_model/**/* filter=lfs diff=lfs merge=lfs -text\n"
    + "*tfevents* filter=lfs diff=lfs merge=lfs -text\n"
)


def lfs_spec(gitattributes: str) -> pathspec.PathSpec[pathspec.Pattern]:
    """The patterns of a `.gitattributes` text that route files to LFS."""
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return pathspec.PathSpec.from_lines("gitignore", patterns)


def ignore_spec(gitignore: str) -> pathspec.PathSpec[pathspec.Pattern]:
    return pathspec.PathSpec.from_lines("gitignore", gitignore.splitlines())


def covers(glob: str, repo_key: str) -> bool:
    """Does a mirror's `repos` glob (over namespace/name) cover a repo key (`model/ns/n`)?"""
    return fnmatchcase(repo_key.split("/", 1)[-1], glob)
