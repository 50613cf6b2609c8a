"""What an image says made it: the typed generation record, and AUTOMATIC1111/Forge
`parameters` text parsed into one.

The text is written by `create_infotext` (A1111 `modules/processing.py`): prompt lines, then
optional `Negative prompt:` lines, then one line of `Key: value, Key: "quoted, value", ...`
settings; a value holding a comma, colon or newline is quoted as JSON. Parsing is lenient
(odd text yields what could be read, never an exception) but capped: text longer than
MAX_TEXT, more than MAX_SETTINGS settings or MAX_RESOURCES resources raise
GenerationParseError. The settings line is read with A1111's own pattern, its key bounded
and its quantifiers possessive, so hostile text costs linear time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from registry.domain.errors import GenerationParseError

MAX_TEXT = 256 * 1024  # characters of a `parameters` text
MAX_SETTINGS = 256  # Key: value pairs on the settings line (Forge + ADetailer write ~60)
MAX_RESOURCES = 256  # checkpoint, VAE, LoRAs, embeddings, ControlNets, upscalers together
MAX_KEY = 64  # characters of a key (A1111's keys are words, spaces, "-" and "/")

# Upscalers built into A1111/Forge: no model file behind them.
_BUILTIN_UPSCALERS = {"none", "lanczos", "nearest"}
_PAIR = re.compile(  # key: a word char and up to MAX_KEY - 1 more; value: quoted or not
    r'(\w[\w \-/]{0,63}):\s*+("[^"\\]*+(?:\\.[^"\\]*+)*+"|[^,]*+)(?:,|$)'
)
_CONTROLNET_KEY = re.compile(r"ControlNet(?: \d{1,3})?")
_HEX = re.compile(r"[0-9a-f]{6,64}")
_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:<>]++)(?::([^:<>]*+))?[^<>]*+>", re.IGNORECASE)
_HASH_SUFFIX = re.compile(r"^(.*?)\s*\[([0-9a-fA-F]{6,64})\]$")
_SIZE = re.compile(r"^\s*(\d{1,6})\s*x\s*(\d{1,6})\s*$")


@dataclass(frozen=True)
class Resource:
    """A model file a generation used. `kind` is checkpoint, lora, embedding, controlnet,
    upscaler, vae, unet or clip; `name` is what the tool called it (a file name, an alias,
    or "" when only a hash was written); `hash` as written (AutoV2, AutoV3, ...) in lower case."""

    kind: str
    name: str
    hash: str | None = None
    weight: float | None = None


@dataclass(frozen=True)
class Generation:
    """One image's generation data, from A1111/Forge `parameters` or a ComfyUI graph."""

    source: str  # "a1111" | "comfyui"
    prompt: str = ""
    negative_prompt: str = ""
    sampler: str | None = None
    scheduler: str | None = None
    steps: int | None = None
    cfg: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    checkpoint: Resource | None = None
    vae: Resource | None = None
    loras: tuple[Resource, ...] = ()
    embeddings: tuple[Resource, ...] = ()
    controlnets: tuple[Resource, ...] = ()
    upscalers: tuple[Resource, ...] = ()
    others: tuple[Resource, ...] = ()  # unet, clip: ComfyUI loaders of split models
    extra: dict[str, str] = field(default_factory=dict)  # settings not understood above

    @property
    def resources(self) -> tuple[Resource, ...]:
        """Every model file named, in one tuple: what a resolver looks up."""
        head = tuple(r for r in (self.checkpoint, self.vae) if r is not None)
        return head + self.loras + self.embeddings + self.controlnets + self.upscalers + self.others


def parse_parameters(text: str) -> Generation:
    """Parse A1111/Forge `parameters` text (a PNG chunk or an EXIF UserComment).

    Raises:
        GenerationParseError: the text, its settings or its resources are over the caps.
    """
    if len(text) > MAX_TEXT:
        raise _over("parameters text", len(text), MAX_TEXT)
    *lines, last = text.strip().replace("\r\n", "\n").split("\n")
    settings = _settings(last)
    if len(settings) < 3:  # A1111's own rule: fewer than 3 pairs is still prompt text
        lines.append(last)
        settings = {}
    prompt, negative = _prompts(lines)
    fields = _Fields(settings)
    width, height = fields.size()
    generation = Generation(
        source="a1111",
        prompt=prompt,
        negative_prompt=negative,
        sampler=fields.text("Sampler"),
        scheduler=fields.text("Schedule type"),
        steps=fields.integer("Steps"),
        cfg=fields.number("CFG scale"),
        seed=fields.integer("Seed"),
        width=width,
        height=height,
        checkpoint=fields.model("checkpoint", "Model", "Model hash"),
        vae=fields.model("vae", "VAE", "VAE hash"),
        loras=_loras(prompt + "\n" + negative, fields.hashes("Lora hashes")),
        embeddings=tuple(
            Resource("embedding", name, digest) for name, digest in fields.hashes("TI hashes")
        ),
        controlnets=fields.controlnets(),
        upscalers=fields.upscalers(),
        extra=fields.rest(),
    )
    if len(generation.resources) > MAX_RESOURCES:
        raise _over("resources", len(generation.resources), MAX_RESOURCES)
    return generation


def _over(what: str, found: int, cap: int) -> GenerationParseError:
    return GenerationParseError(
        f"Generation data has {found} {what}, over the cap of {cap}",
        detail={"reason": f"too many {what}", "found": found, "cap": cap},
    )


def _prompts(lines: list[str]) -> tuple[str, str]:
    prompt: list[str] = []
    negative: list[str] = []
    target = prompt
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("Negative prompt:"):
            target, stripped = negative, stripped[len("Negative prompt:") :].strip()
        target.append(stripped)
    return "\n".join(prompt).strip(), "\n".join(negative).strip()


def _settings(line: str) -> dict[str, str]:
    """`Key: value, Key: "quoted, value", ...` as a dict: A1111's own pattern, with the key
    bounded and the quantifiers possessive, so a scan costs linear time."""
    found: dict[str, str] = {}
    for match in _PAIR.finditer(line):
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                value = str(json.loads(value))
            except ValueError:
                value = value[1:-1]
        found[match.group(1)] = value
        if len(found) > MAX_SETTINGS:
            raise _over("settings", len(found), MAX_SETTINGS)
    return found


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None and len(text) < 32 else None
    except ValueError:
        return None


class _Fields:
    """Typed reads of the settings dict; what is read is removed, what remains is `extra`."""

    def __init__(self, settings: dict[str, str]) -> None:
        self._left = dict(settings)

    def text(self, key: str) -> str | None:
        value = self._left.pop(key, None)
        return value or None

    def integer(self, key: str) -> int | None:
        number = _number(self._left.get(key))
        if number is None or not number.is_integer():
            return None
        del self._left[key]
        return int(number)

    def number(self, key: str) -> float | None:
        number = _number(self._left.get(key))
        if number is not None:
            del self._left[key]
        return number

    def size(self) -> tuple[int | None, int | None]:
        match = _SIZE.match(self._left.get("Size", ""))
        if match is None:
            return None, None
        del self._left["Size"]
        return int(match.group(1)), int(match.group(2))

    def model(self, kind: str, name_key: str, hash_key: str) -> Resource | None:
        name, digest = self.text(name_key), self.text(hash_key)
        if name is None and digest is None:
            return None
        return Resource(kind, name or "", _hex(digest))

    def hashes(self, key: str) -> list[tuple[str, str | None]]:
        """`name: hash, name2: hash2` (Lora hashes, TI hashes), quoted or not."""
        value = self._left.pop(key, "")
        pairs = []
        for item in value.split(","):
            name, _, digest = item.rpartition(":")
            if not name.strip():
                name, digest = digest, ""
            if name.strip():
                pairs.append((name.strip(), _hex(digest)))
        return pairs

    def controlnets(self) -> tuple[Resource, ...]:
        units = [key for key in self._left if _CONTROLNET_KEY.fullmatch(key)]
        found = []
        for key in units:
            unit = _settings(self._left.pop(key))
            model = unit.get("Model", "")
            if not model or model.lower() == "none":
                continue
            match = _HASH_SUFFIX.match(model)
            name, digest = (match.group(1), match.group(2)) if match else (model, None)
            found.append(Resource("controlnet", name, _hex(digest), _number(unit.get("Weight"))))
        return tuple(found)

    def upscalers(self) -> tuple[Resource, ...]:
        name = self.text("Hires upscaler")
        if name is None or name.lower() in _BUILTIN_UPSCALERS or name.startswith("Latent"):
            return ()
        return (Resource("upscaler", name),)

    def rest(self) -> dict[str, str]:
        return self._left


def _hex(digest: str | None) -> str | None:
    digest = (digest or "").strip().lower()
    return digest if _HEX.fullmatch(digest) else None


def _loras(prompt: str, hashes: list[tuple[str, str | None]]) -> tuple[Resource, ...]:
    """LoRAs from `<lora:name:weight>` tags and `Lora hashes`, merged by name: the weight
    from the tag (1.0 when it gives none), the hash from the hashes."""
    weights: dict[str, float] = {}
    for match in _LORA_TAG.finditer(prompt):
        if len(weights) > MAX_RESOURCES:
            raise _over("LoRA tags", len(weights), MAX_RESOURCES)
        weight = _number(match.group(2))
        weights.setdefault(match.group(1).strip(), 1.0 if weight is None else weight)
    by_hash = dict(hashes)
    folded = {name.casefold(): digest for name, digest in hashes}
    loras = [
        Resource("lora", name, by_hash.get(name, folded.get(name.casefold())), weight)
        for name, weight in weights.items()
    ]
    tagged = {name.casefold() for name in weights}
    loras += [
        Resource("lora", name, digest) for name, digest in hashes if name.casefold() not in tagged
    ]
    return tuple(loras)
