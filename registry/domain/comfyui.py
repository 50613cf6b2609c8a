"""ComfyUI graphs: their JSON loaded under caps, and the API-format graph read as a
generation record.

ComfyUI writes two graphs into an image: `prompt`, the API format (node id -> `class_type`,
`inputs`, where an input is a value or a `[node_id, slot]` link), and `workflow`, the UI
format (`nodes` with `type` and `widgets_values`, `links`, ...). Either may be hostile: huge,
nested 100 000 deep, or a million nodes. `load_graph` measures size, nesting depth and the
number of values on the raw text with C-speed bytes operations (strings cut out with `split`,
brackets kept with `translate`) before `json.loads` builds anything, so memory stays near the
text's own size and no recursion limit is met.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from registry.domain.errors import (
    GenerationParseError,
    WorkflowInvalidError,
    WorkflowTooLargeError,
)
from registry.domain.generation import MAX_RESOURCES, Generation, Resource
from registry.domain.workflow import read_workflow

MAX_JSON_BYTES = 8 * 1024 * 1024  # characters of one graph's JSON
MAX_DEPTH = 64  # nesting; a UI workflow with subgraphs is ~12 deep
MAX_VALUES = 400_000  # commas and colons outside strings: ~ the values json.loads builds
MAX_NODES = 10_000

_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")

# ComfyUI's model folder (registry.domain.workflow, where the loader nodes are listed) -> the
# kind of resource a generation record files it under.
KINDS = {
    "checkpoints": "checkpoint",
    "loras": "lora",
    "vae": "vae",
    "controlnet": "controlnet",
    "upscale_models": "upscaler",
    "diffusion_models": "unet",
    "text_encoders": "clip",
    "clip_vision": "clip_vision",
    "style_models": "style_model",
    "embeddings": "embedding",
}
_SAMPLERS = ("KSampler", "KSamplerAdvanced")


def load_graph(text: str, what: str = "graph") -> dict[str, object]:
    """Parse a ComfyUI graph's JSON (`what` names it in errors) after checking its caps.

    Raises:
        GenerationParseError: over a cap, not JSON, or not a JSON object.
    """
    if len(text) > MAX_JSON_BYTES:
        raise _refused(what, f"{len(text)} characters, over the cap of {MAX_JSON_BYTES}")
    skeleton = _outside_strings(text.encode("utf-8", "surrogatepass"))
    if skeleton is None:
        raise _refused(what, f"over {MAX_VALUES} strings")
    values = skeleton.count(b",") + skeleton.count(b":")
    if values > MAX_VALUES:
        raise _refused(what, f"over {MAX_VALUES} values ({values})")
    if _too_deep(skeleton.translate(_BRACKETS, _NOT_BRACKETS)):
        raise _refused(what, f"nested deeper than {MAX_DEPTH}")
    try:
        graph = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _refused(what, f"not JSON ({str(exc)[:100]})") from None
    if not isinstance(graph, dict):
        raise _refused(what, "not a JSON object")
    ui_nodes = graph.get("nodes")
    nodes = len(ui_nodes) if isinstance(ui_nodes, list) else len(graph)
    if nodes > MAX_NODES:
        raise _refused(what, f"{nodes} nodes, over the cap of {MAX_NODES}")
    return graph


def _outside_strings(raw: bytes) -> bytes | None:
    """The JSON text without its strings, or None if it holds more than MAX_VALUES strings.

    Escaped backslashes go first, then escaped quotes (the pairs JSON's own reading makes,
    left to right); every quote left then opens or closes a string, so the text between
    them alternates outside, inside. Bounding the quotes first bounds the pieces split."""
    raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    if raw.count(b'"') > 2 * MAX_VALUES:
        return None
    return b"".join(raw.split(b'"')[0::2])


def _too_deep(brackets: bytes) -> bool:
    """Peel innermost `()` pairs a level a pass: deeper than MAX_DEPTH if any remain after
    MAX_DEPTH passes (unbalanced text stops shrinking and is left to json.loads)."""
    for _ in range(MAX_DEPTH):
        peeled = brackets.replace(b"()", b"")
        if not peeled or len(peeled) == len(brackets):
            return False
        brackets = peeled
    return b"()" in brackets


def _refused(what: str, why: str) -> GenerationParseError:
    return GenerationParseError(f"ComfyUI {what}: {why}", detail={"reason": f"{what}: {why}"})


def generation_from_prompt(graph: Mapping[str, object]) -> Generation:
    """Read an API-format graph (the `prompt` chunk) as a generation record: the model files
    its loader nodes and `embedding:name` texts name (`registry.domain.workflow`, the one
    list of loaders) give the resources, the first KSampler its settings and, through its
    `positive` and `negative` links, the prompts. `graph` is one `load_graph` returned: its
    caps were checked on the text.

    Raises:
        GenerationParseError: a model name that could escape its folder, or too many models.
    """
    nodes = {k: v for k, v in graph.items() if isinstance(v, dict) and "class_type" in v}
    try:
        needs = read_workflow(nodes, capped=True).requirements if nodes else ()
    except (WorkflowInvalidError, WorkflowTooLargeError) as exc:
        raise _refused("prompt", exc.message) from None
    resources = list(
        dict.fromkeys(Resource(KINDS[r.folder], r.filename, None, r.weight) for r in needs)
    )
    if len(resources) > MAX_RESOURCES:
        raise _refused("prompt", f"{len(resources)} resources, over the cap of {MAX_RESOURCES}")
    return _record(nodes, resources)


def _record(nodes: dict[str, dict[str, object]], resources: list[Resource]) -> Generation:
    sampler = next((n for n in nodes.values() if n.get("class_type") in _SAMPLERS), {})
    inputs = _inputs(sampler)
    latent = next((n for n in nodes.values() if n.get("class_type") == "EmptyLatentImage"), {})
    size = _inputs(latent)

    by_kind: dict[str, list[Resource]] = {}
    for resource in resources:
        by_kind.setdefault(resource.kind, []).append(resource)

    def of(kind: str) -> tuple[Resource, ...]:
        return tuple(by_kind.get(kind, ()))

    return Generation(
        source="comfyui",
        prompt=_linked_text(nodes, inputs.get("positive")),
        negative_prompt=_linked_text(nodes, inputs.get("negative")),
        sampler=_text(inputs.get("sampler_name")),
        scheduler=_text(inputs.get("scheduler")),
        steps=_integer(inputs.get("steps")),
        cfg=_number(inputs.get("cfg")),
        seed=_integer(inputs.get("seed", inputs.get("noise_seed"))),
        width=_integer(size.get("width")),
        height=_integer(size.get("height")),
        checkpoint=next(iter(of("checkpoint")), None),
        vae=next(iter(of("vae")), None),
        loras=of("lora"),
        embeddings=of("embedding"),
        controlnets=of("controlnet"),
        upscalers=of("upscaler"),
        others=of("unet")
        + of("clip")
        + of("clip_vision")
        + of("style_model")
        + of("checkpoint")[1:]
        + of("vae")[1:],
    )


def _inputs(node: Mapping[str, object]) -> Mapping[str, object]:
    inputs = node.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _linked_text(nodes: dict[str, dict[str, object]], link: object) -> str:
    """The `text` of the node a `[node_id, slot]` link points at, if it is a string."""
    if isinstance(link, list) and link and isinstance(link[0], str | int):
        text = _inputs(nodes.get(str(link[0]), {})).get("text")
        return text if isinstance(text, str) else ""
    return ""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
