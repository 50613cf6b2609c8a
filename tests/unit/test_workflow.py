"""ComfyUI workflows: the model files each format names, embeddings in prompts, names that
could escape their folder, and the caps that bound a hostile document."""

from __future__ import annotations

import json
import time

import pytest

from registry.domain.errors import WorkflowInvalidError, WorkflowTooLargeError
from registry.domain.workflow import (
    MAX_BYTES,
    MAX_NODES,
    MAX_REQUIREMENTS,
    MAX_STRING,
    Requirement,
    basenames,
    model_name,
    parse_workflow,
    read_workflow,
    with_extension,
)

API = {
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "SDXL\\base.safetensors"},
    },
    "10": {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "style.safetensors",
            "strength_model": 0.8,
            "strength_clip": 1.0,
            "model": ["4", 0],
            "clip": ["4", 1],
        },
    },
    "11": {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"lora_name": "detail.safetensors", "strength_model": ["99", 0]},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {
            "text": "a cat, (embedding:easyneg:1.2), embedding:sub/good.pt",
            "clip": ["10", 1],
        },
    },
    "7": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
    "8": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny.safetensors"}},
    "9": {
        "class_type": "DiffControlNetLoader",
        "inputs": {"control_net_name": "depth.pth", "model": ["4", 0]},
    },
    "12": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}},
    "13": {"class_type": "CLIPLoader", "inputs": {"clip_name": "t5.safetensors", "type": "sd3"}},
    "14": {
        "class_type": "DualCLIPLoader",
        "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl.gguf", "type": "flux"},
    },
    "15": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1.safetensors"}},
    "16": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vit.safetensors"}},
    "17": {"class_type": "StyleModelLoader", "inputs": {"style_model_name": "redux.safetensors"}},
    "18": {
        "class_type": "CheckpointLoader",
        "inputs": {"config_name": "v1.yaml", "ckpt_name": "old.ckpt"},
    },
    "19": {"class_type": "KSampler", "inputs": {"seed": 1, "sampler_name": "euler"}},
}
API_EXPECTED = {
    Requirement("4", "CheckpointLoaderSimple", "ckpt_name", "SDXL/base.safetensors", "checkpoints"),
    Requirement("10", "LoraLoader", "lora_name", "style.safetensors", "loras", 0.8),
    Requirement("11", "LoraLoaderModelOnly", "lora_name", "detail.safetensors", "loras"),
    Requirement("6", "CLIPTextEncode", "text", "easyneg", "embeddings", 1.2),
    Requirement("6", "CLIPTextEncode", "text", "sub/good.pt", "embeddings"),
    Requirement("7", "VAELoader", "vae_name", "sdxl_vae.safetensors", "vae"),
    Requirement("8", "ControlNetLoader", "control_net_name", "canny.safetensors", "controlnet"),
    Requirement("9", "DiffControlNetLoader", "control_net_name", "depth.pth", "controlnet"),
    Requirement("12", "UpscaleModelLoader", "model_name", "4x.pth", "upscale_models"),
    Requirement("13", "CLIPLoader", "clip_name", "t5.safetensors", "text_encoders"),
    Requirement("14", "DualCLIPLoader", "clip_name1", "clip_l.safetensors", "text_encoders"),
    Requirement("14", "DualCLIPLoader", "clip_name2", "t5xxl.gguf", "text_encoders"),
    Requirement("15", "UNETLoader", "unet_name", "flux1.safetensors", "diffusion_models"),
    Requirement("16", "CLIPVisionLoader", "clip_name", "vit.safetensors", "clip_vision"),
    Requirement("17", "StyleModelLoader", "style_model_name", "redux.safetensors", "style_models"),
    Requirement("18", "CheckpointLoader", "ckpt_name", "old.ckpt", "checkpoints"),
}


def _ui(*nodes: tuple[int, str, list[object]]) -> dict[str, object]:
    return {
        "last_node_id": 20,
        "nodes": [
            {"id": i, "type": t, "pos": [0, 0], "inputs": [], "outputs": [], "widgets_values": w}
            for i, t, w in nodes
        ],
        "links": [[1, 4, 0, 10, 0, "MODEL"]],
        "groups": [],
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
        "version": 0.4,
    }


def test_read_workflow_lists_every_loader_of_the_api_format() -> None:
    workflow = parse_workflow(json.dumps(API).encode())
    assert workflow.format == "api"
    assert set(workflow.requirements) == API_EXPECTED
    assert len(workflow.requirements) == len(API_EXPECTED)


def test_read_workflow_takes_a_prompt_request_body() -> None:
    workflow = read_workflow({"prompt": API, "client_id": "x"})
    assert set(workflow.requirements) == API_EXPECTED


def test_read_workflow_reads_ui_widgets_by_position() -> None:
    workflow = read_workflow(
        _ui(
            (4, "CheckpointLoaderSimple", ["base.safetensors"]),
            (10, "LoraLoader", ["loras\\style.safetensors", 0.65, 1.0]),
            (11, "LoraLoaderModelOnly", ["detail.safetensors", 0.3]),
            (14, "DualCLIPLoader", ["clip_l.safetensors", "t5xxl.gguf", "flux"]),
            (18, "CheckpointLoader", ["v1.yaml", "old.ckpt"]),
            (6, "CLIPTextEncode", ["photo, embedding:EasyNegative.safetensors"]),
            (19, "KSampler", [1, "randomize", 20, 7, "euler", "normal", 1]),
            (20, "Note", ["not a model.safetensors, nor embedding:this"]),
        )
    )
    assert workflow.format == "ui"
    assert workflow.requirements == (
        Requirement("4", "CheckpointLoaderSimple", "ckpt_name", "base.safetensors", "checkpoints"),
        Requirement("10", "LoraLoader", "lora_name", "loras/style.safetensors", "loras", 0.65),
        Requirement("11", "LoraLoaderModelOnly", "lora_name", "detail.safetensors", "loras", 0.3),
        Requirement("14", "DualCLIPLoader", "clip_name1", "clip_l.safetensors", "text_encoders"),
        Requirement("14", "DualCLIPLoader", "clip_name2", "t5xxl.gguf", "text_encoders"),
        Requirement("18", "CheckpointLoader", "ckpt_name", "old.ckpt", "checkpoints"),
        Requirement("6", "CLIPTextEncode", "widget_0", "EasyNegative.safetensors", "embeddings"),
    )


def test_read_workflow_reads_subgraphs_and_skips_muted_and_bypassed_nodes() -> None:
    doc = _ui(
        (1, "VAELoader", ["used.safetensors"]),
        (2, "VAELoader", ["muted.safetensors"]),
        (3, "VAELoader", ["bypassed.safetensors"]),
    )
    nodes = doc["nodes"]
    assert isinstance(nodes, list)
    nodes[1]["mode"], nodes[2]["mode"] = 2, 4
    doc["definitions"] = {
        "subgraphs": [
            {"id": "sg-1", "nodes": [{"id": 7, "type": "UNETLoader", "widgets_values": ["u.gguf"]}]}
        ]
    }
    assert read_workflow(doc).requirements == (
        Requirement("1", "VAELoader", "vae_name", "used.safetensors", "vae"),
        Requirement("sg-1:7", "UNETLoader", "unet_name", "u.gguf", "diffusion_models"),
    )


def test_read_workflow_reads_ui_widgets_saved_by_name() -> None:
    doc = {"nodes": [{"id": 3, "type": "VAELoader", "widgets_values": {"vae_name": "v.pt"}}]}
    assert read_workflow(doc).requirements == (
        Requirement("3", "VAELoader", "vae_name", "v.pt", "vae"),
    )


@pytest.mark.parametrize("weight", ["NaN", "Infinity", "-1e999", "1" + "0" * 400, '["4", 1]'])
def test_weights_that_are_no_finite_number_are_left_out(weight: str) -> None:
    body = (
        '{"1": {"class_type": "LoraLoader", "inputs": {"lora_name": "a.safetensors", '
        f'"strength_model": {weight}}}}}}}'
    )
    (lora,) = parse_workflow(body.encode()).requirements
    assert (lora.filename, lora.weight) == ("a.safetensors", None)


def test_read_workflow_skips_linked_and_missing_widgets() -> None:
    doc = _ui((4, "CheckpointLoaderSimple", []), (5, "VAELoader", [None]))
    assert read_workflow(doc).requirements == ()
    assert read_workflow({"1": {"class_type": "VAELoader", "inputs": {"vae_name": ["2", 0]}}})


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("embedding:neg", [("neg", None)]),
        ("(embedding:neg:1.25), embedding:pos.pt", [("neg", 1.25), ("pos.pt", None)]),
        ("a,embedding:x\tembedding:x", [("x", None)]),
        ("no embeddings here: embedding", []),
    ],
)
def test_read_workflow_finds_embeddings_in_prompts(
    text: str, found: list[tuple[str, float | None]]
) -> None:
    doc = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": text}}}
    got = [(r.filename, r.weight) for r in read_workflow(doc).requirements]
    assert got == found


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../x.safetensors", "'..'"),
        ("loras/../../../etc/passwd", "'..'"),
        ("..\\..\\x.safetensors", "'..'"),
        ("/etc/passwd", "absolute"),
        ("\\\\server\\share\\x.ckpt", "absolute"),
        ("C:\\models\\x.ckpt", "drive letter"),
        ("c:x.ckpt", "drive letter"),
        ("x\x00.safetensors", "NUL"),
        ("sub/", "no file name"),
        ("a" * 2000, "longer than"),
    ],
)
def test_model_name_refuses_names_that_leave_their_folder(name: str, reason: str) -> None:
    doc = {"7": {"class_type": "LoraLoader", "inputs": {"lora_name": name}}}
    with pytest.raises(WorkflowInvalidError) as caught:
        read_workflow(doc)
    assert reason in caught.value.message
    assert caught.value.detail["node_id"] == "7"
    assert caught.value.detail["input"] == "lora_name"


def test_model_name_keeps_subfolders_with_forward_slashes() -> None:
    assert model_name("SDXL\\styles/./x.safetensors") == "SDXL/styles/x.safetensors"
    assert model_name("..foo.safetensors") == "..foo.safetensors"


def test_embedding_names_that_leave_their_folder_are_refused() -> None:
    doc = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "embedding:../../evil"}}}
    with pytest.raises(WorkflowInvalidError):
        read_workflow(doc)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"{}", b'{"a": {"inputs": {}}}'],
)
def test_parse_workflow_refuses_what_is_not_a_workflow(body: bytes) -> None:
    with pytest.raises(WorkflowInvalidError):
        parse_workflow(body)


def test_parse_workflow_refuses_100k_deep_nesting_quickly() -> None:
    body = b'{"nodes": [], "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    started = time.monotonic()
    with pytest.raises(WorkflowTooLargeError) as caught:
        parse_workflow(body)
    assert caught.value.detail["cap"] == "depth"
    assert time.monotonic() - started < 2


def test_read_workflow_refuses_deep_structures_built_in_memory() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    started = time.monotonic()
    with pytest.raises(WorkflowTooLargeError) as caught:
        read_workflow({"nodes": [], "extra": deep})
    assert caught.value.detail["cap"] == "depth"
    assert time.monotonic() - started < 2


def test_read_workflow_refuses_a_million_nodes_quickly() -> None:
    node = {"class_type": "VAELoader", "inputs": {"vae_name": "v.pt"}}
    api = {str(i): node for i in range(1_000_000)}
    ui = {"nodes": [{"id": i, "type": "VAELoader"} for i in range(1_000_000)]}
    for doc in (api, ui):
        started = time.monotonic()
        with pytest.raises(WorkflowTooLargeError) as caught:
            read_workflow(doc)
        assert caught.value.detail == {"cap": "nodes", "max": MAX_NODES}
        assert time.monotonic() - started < 1


def test_parse_workflow_refuses_oversize_bytes_and_strings() -> None:
    with pytest.raises(WorkflowTooLargeError) as caught:
        parse_workflow(b" " * (MAX_BYTES + 1))
    assert caught.value.detail["cap"] == "bytes"
    text = "x" * (MAX_STRING + 1)
    doc = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": text}}}
    with pytest.raises(WorkflowTooLargeError) as caught:
        read_workflow(doc)
    assert caught.value.detail["cap"] == "string length"


def test_read_workflow_refuses_too_many_requirements() -> None:
    text = " ".join(f"embedding:e{i}" for i in range(MAX_REQUIREMENTS + 1))
    doc = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": text}}}
    with pytest.raises(WorkflowTooLargeError) as caught:
        read_workflow(doc)
    assert caught.value.detail == {"cap": "requirements", "max": MAX_REQUIREMENTS}
    fits = " ".join(f"embedding:e{i}" for i in range(MAX_REQUIREMENTS))
    doc = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": fits}}}
    assert len(read_workflow(doc).requirements) == MAX_REQUIREMENTS


def test_read_workflow_refuses_too_many_values_quickly() -> None:
    wide = {"nodes": [], "extra": [[0] * 1000 for _ in range(1100)]}
    started = time.monotonic()
    with pytest.raises(WorkflowTooLargeError) as caught:
        read_workflow(wide)
    assert caught.value.detail["cap"] == "values"
    assert time.monotonic() - started < 2


def test_basenames_and_local_names_of_extensionless_embeddings() -> None:
    assert basenames("SDXL/Base.SafeTensors") == ("base.safetensors",)
    assert basenames("sub/neg")[:3] == ("neg", "neg.safetensors", "neg.ckpt")
    assert with_extension("sub/neg", "emb/neg.pt") == "sub/neg.pt"
    assert with_extension("x.safetensors", "y/x.safetensors") == "x.safetensors"
