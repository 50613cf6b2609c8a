"""The model files a ComfyUI workflow needs, read from its JSON in either of ComfyUI's formats.

Theory of operation: a workflow comes in two shapes. The API format (what ComfyUI queues and
writes to a PNG's `prompt` chunk) maps node ids to `{"class_type", "inputs"}`, inputs by name.
The UI format (the editor's save file, a PNG's `workflow` chunk) holds `{"nodes": [...]}`,
each node with a `type` and positional `widgets_values`, so its loaders are read through the
widget positions of `LOADERS` below (ComfyUI's `INPUT_TYPES` order, links excluded). Before
anything is read the document is walked once, iteratively, against the caps (bytes, depth,
nodes, values, string length): a hostile document costs bounded time and never recurses.

Model names are data from a stranger: `model_name` refuses any that could leave its folder
(absolute, `..`, a drive letter, NUL, control characters) and turns Windows separators into
`/`, keeping subfolders (`SDXL/foo.safetensors`), which ComfyUI allows.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from registry.domain.errors import WorkflowInvalidError, WorkflowTooLargeError

MAX_BYTES = 16 * 1024 * 1024  # a workflow's JSON; the node's body limit is usually lower
MAX_DEPTH = 64  # UI files nest about 8 deep (subgraphs a few more)
MAX_NODES = 10_000
MAX_VALUES = 1_000_000  # every value of the document, containers included
MAX_STRING = 256 * 1024  # characters; the longest prompts are a few thousand
MAX_NAME = 1024  # characters of a model name
MAX_REQUIREMENTS = 500  # model files named; big workflows name a few dozen
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")

Format = Literal["api", "ui"]


@dataclass(frozen=True)
class Loader:
    """A loader node's model inputs: (input name, folder, widget position in the UI format),
    and the input holding its weight, if it has one."""

    inputs: tuple[tuple[str, str, int], ...]
    weight: str | None = None
    weight_position: int | None = None


# Node type -> its model inputs. Widget positions follow each node's INPUT_TYPES order in
# ComfyUI's nodes.py (widgets only; linked inputs such as `model` or `clip` take no slot):
# CheckpointLoader [config_name, ckpt_name]; LoraLoader [lora_name, strength_model,
# strength_clip]; LoraLoaderModelOnly [lora_name, strength_model]; DualCLIPLoader
# [clip_name1, clip_name2, type]; every other loader has its model name first. `clip` is the
# legacy name of `text_encoders`, `unet` of `diffusion_models`: ComfyUI reads both.
LOADERS: dict[str, Loader] = {
    "CheckpointLoaderSimple": Loader((("ckpt_name", "checkpoints", 0),)),
    "CheckpointLoader": Loader((("ckpt_name", "checkpoints", 1),)),
    "LoraLoader": Loader((("lora_name", "loras", 0),), "strength_model", 1),
    "LoraLoaderModelOnly": Loader((("lora_name", "loras", 0),), "strength_model", 1),
    "VAELoader": Loader((("vae_name", "vae", 0),)),
    "ControlNetLoader": Loader((("control_net_name", "controlnet", 0),)),
    "DiffControlNetLoader": Loader((("control_net_name", "controlnet", 0),)),
    "UpscaleModelLoader": Loader((("model_name", "upscale_models", 0),)),
    "CLIPLoader": Loader((("clip_name", "text_encoders", 0),)),
    "DualCLIPLoader": Loader(
        (("clip_name1", "text_encoders", 0), ("clip_name2", "text_encoders", 1))
    ),
    "UNETLoader": Loader((("unet_name", "diffusion_models", 0),)),
    "CLIPVisionLoader": Loader((("clip_name", "clip_vision", 0),)),
    "StyleModelLoader": Loader((("style_model_name", "style_models", 0),)),
}
# `embedding:name`, `embedding:sub/name.pt`, `(embedding:name:1.2)`; ComfyUI ends the name at
# whitespace, a comma or a bracket.
_EMBEDDING = re.compile(r"embedding:([^\s,()\[\]<>:|\"]+)(?::(-?\d+(?:\.\d+)?)\))?")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_RUN = (2, 4)  # a UI node's mode: muted ("never") or bypassed; it loads nothing
_NOTES = ("Note", "MarkdownNote")  # text for people: an `embedding:` in it loads nothing


@dataclass(frozen=True)
class Requirement:
    """One model file a node of the workflow loads, by the name the workflow uses."""

    node_id: str
    node_type: str
    input: str  # the input's name (API format, known loaders) or `widget_N`
    filename: str  # normalized: forward slashes, maybe with subfolders
    folder: str  # ComfyUI's models/<folder>
    weight: float | None = None


@dataclass(frozen=True)
class Workflow:
    format: Format
    requirements: tuple[Requirement, ...]


def parse_workflow(data: bytes) -> Workflow:
    """A workflow's requirements from its JSON bytes.

    Raises:
        WorkflowTooLargeError: over a cap (bytes, depth, nodes, values, string length).
        WorkflowInvalidError: not JSON, not a ComfyUI workflow, or a model name that could
            escape its folder.
    """
    if len(data) > MAX_BYTES:
        raise WorkflowTooLargeError(
            f"A workflow of {len(data)} bytes is over the cap of {MAX_BYTES}",
            detail={"cap": "bytes", "max": MAX_BYTES},
        )
    try:
        document = json.loads(data)
    except RecursionError:  # json's C scanner refuses to nest past the interpreter's limit
        raise _too_large("depth", MAX_DEPTH) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise WorkflowInvalidError(f"The workflow is not JSON: {exc}") from None
    return read_workflow(document)


def read_workflow(document: object, *, capped: bool = False) -> Workflow:
    """A parsed workflow's requirements, in either format (see the module docstring).
    `capped`: the document was loaded under caps already (`registry.domain.comfyui.load_graph`
    checks size, depth and values on the text), so the walk over every value is skipped."""
    graph = _graph(document)
    if not capped:
        _check_caps(document)
    if isinstance(graph, list):
        return Workflow("ui", _capped(_ui_requirements(graph)))
    return Workflow("api", _capped(_api_requirements(graph)))


def _capped(requirements: Iterator[Requirement]) -> tuple[Requirement, ...]:
    """At most MAX_REQUIREMENTS (each costs a lookup; a prompt can name thousands)."""
    found = tuple(itertools.islice(requirements, MAX_REQUIREMENTS + 1))
    if len(found) > MAX_REQUIREMENTS:
        raise _too_large("requirements", MAX_REQUIREMENTS)
    return found


def _graph(document: object) -> dict[str, object] | list[tuple[str, object]]:
    """The nodes with their ids (UI format) or the id -> node map (API format; a `/prompt`
    request's `{"prompt": {...}}` too)."""
    if not isinstance(document, dict):
        raise WorkflowInvalidError("A workflow is a JSON object")
    if isinstance(document.get("nodes"), list):
        return _ui_nodes(document)
    if isinstance(document.get("prompt"), dict) and "class_type" not in document:
        document = document["prompt"]
        assert isinstance(document, dict)
    _check_nodes(len(document))
    if document and all(isinstance(n, dict) and "class_type" in n for n in document.values()):
        return document
    raise WorkflowInvalidError(
        "Not a ComfyUI workflow: neither UI format ({nodes: [...]}) nor API format "
        "({id: {class_type, inputs}})"
    )


def _ui_nodes(document: dict[str, object]) -> list[tuple[str, object]]:
    """The UI format's nodes, those of its subgraphs (`definitions.subgraphs[].nodes`, newer
    front ends) included, each with its id (`<subgraph id>:<node id>` inside a subgraph)."""
    graphs: list[tuple[str, object]] = [("", document.get("nodes"))]
    definitions = document.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    if isinstance(subgraphs, list):
        _check_nodes(len(subgraphs))
        graphs += [(f"{g.get('id')}:", g.get("nodes")) for g in subgraphs if isinstance(g, dict)]
    lists = [(prefix, nodes) for prefix, nodes in graphs if isinstance(nodes, list)]
    _check_nodes(sum(len(nodes) for _, nodes in lists))
    return [
        (f"{prefix}{node.get('id') if isinstance(node, dict) else ''}", node)
        for prefix, nodes in lists
        for node in nodes
    ]


def _too_large(cap: str, limit: int) -> WorkflowTooLargeError:
    return WorkflowTooLargeError(
        f"The workflow is over the cap of {limit} for {cap}", detail={"cap": cap, "max": limit}
    )


def _check_nodes(count: int) -> None:
    if count > MAX_NODES:
        raise _too_large("nodes", MAX_NODES)


def _check_caps(document: object) -> None:
    """Walk the whole document once, without recursion, stopping at the first cap passed
    (values are counted before a container's are pushed, so the stack stays within the cap)."""
    stack: list[tuple[object, int]] = [(document, 1)]
    seen = 1
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_large("depth", MAX_DEPTH)
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise _too_large("string length", MAX_STRING)
        if isinstance(value, dict | list):
            seen += len(value) * (2 if isinstance(value, dict) else 1)
            if seen > MAX_VALUES:
                raise _too_large("values", MAX_VALUES)
            if isinstance(value, dict):
                stack.extend((k, depth + 1) for k in value)
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)


def _api_requirements(graph: Mapping[str, object]) -> Iterator[Requirement]:
    for node_id, node in graph.items():
        assert isinstance(node, dict)
        node_type = str(node["class_type"])
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            continue
        loader = LOADERS.get(node_type)
        if loader is not None:
            weight = _number(inputs.get(loader.weight)) if loader.weight else None
            for name, folder, _ in loader.inputs:
                value = inputs.get(name)
                if isinstance(value, str) and value:  # a link ([id, slot]) names no file
                    filename = model_name(value, node_id, name)
                    yield Requirement(node_id, node_type, name, filename, folder, weight)
        for name, value in inputs.items():
            if isinstance(value, str):
                yield from _embeddings(value, node_id, node_type, str(name))


def _ui_requirements(nodes: list[tuple[str, object]]) -> Iterator[Requirement]:
    for node_id, node in nodes:
        if not isinstance(node, dict):
            raise WorkflowInvalidError("A UI-format workflow's nodes are objects")
        if node.get("mode") in _NOT_RUN:
            continue
        node_type = str(node.get("type"))
        widgets = node.get("widgets_values")
        if isinstance(widgets, dict):  # some front ends save widgets by name
            yield from _api_requirements({node_id: {"class_type": node_type, "inputs": widgets}})
            continue
        if not isinstance(widgets, list):
            continue
        loader = LOADERS.get(node_type)
        if loader is not None:
            yield from _ui_loader(loader, widgets, node_id, node_type)
        if node_type in _NOTES:
            continue
        for position, value in enumerate(widgets):
            if isinstance(value, str):
                yield from _embeddings(value, node_id, node_type, f"widget_{position}")


def _ui_loader(
    loader: Loader, widgets: list[object], node_id: str, node_type: str
) -> Iterator[Requirement]:
    position = loader.weight_position
    weight = (
        _number(widgets[position]) if position is not None and position < len(widgets) else None
    )
    for name, folder, index in loader.inputs:
        value = widgets[index] if index < len(widgets) else None
        if isinstance(value, str) and value:
            filename = model_name(value, node_id, name)
            yield Requirement(node_id, node_type, name, filename, folder, weight)


def _embeddings(text: str, node_id: str, node_type: str, name: str) -> Iterator[Requirement]:
    if "embedding:" not in text:  # most strings: no regex run
        return
    seen: set[str] = set()
    for match in _EMBEDDING.finditer(text):
        filename = model_name(match.group(1), node_id, name)
        if filename not in seen:
            seen.add(filename)
            weight = float(match.group(2)) if match.group(2) else None
            yield Requirement(node_id, node_type, name, filename, "embeddings", weight)


def _number(value: object) -> float | None:
    """A weight as a finite float; None for anything else (a link, NaN, 1e999, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def model_name(value: str, node_id: str = "", input_name: str = "") -> str:
    """A model name as a relative path inside its folder, with `/` separators.

    Raises:
        WorkflowInvalidError: a name that could leave the folder, with the reason.
    """
    problem = _name_problem(value)
    if problem is not None:
        raise WorkflowInvalidError(
            f"Node {node_id} ({input_name}) names {value[:200]!r}: {problem}",
            detail={"node_id": node_id, "input": input_name, "reason": problem},
        )
    return "/".join(p for p in value.replace("\\", "/").split("/") if p not in ("", "."))


def _name_problem(value: str) -> str | None:
    if len(value) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if _CONTROL.search(value):
        return "NUL or another control character"
    if _DRIVE.match(value):
        return "a drive letter"
    if value.startswith(("/", "\\")):
        return "an absolute path"
    parts = value.replace("\\", "/").split("/")
    if ".." in parts:
        return "a '..' segment"
    if not parts[-1] or parts[-1] == ".":
        return "no file name"
    return None


def with_extension(filename: str, found: str) -> str:
    """The local name of a file the workflow names without its extension (embeddings are
    written `embedding:name`): `filename` plus the extension of the file `found` for it."""
    if filename.lower().endswith(MODEL_EXTENSIONS):
        return filename
    base = found.rsplit("/", 1)[-1]
    return filename + base[base.rfind(".") :] if "." in base else filename


def basenames(filename: str) -> tuple[str, ...]:
    """The file names (lower case) a requirement matches: its own, or, without a model
    extension, that name with each of them."""
    base = filename.rsplit("/", 1)[-1].lower()
    if base.endswith(MODEL_EXTENSIONS):
        return (base,)
    return (base, *(base + ext for ext in MODEL_EXTENSIONS))
