"""Generation records: A1111/Forge `parameters` text as those tools write it, odd and partial
text read leniently, text over the caps refused, and ComfyUI graphs loaded under caps and read
into the same record."""

from __future__ import annotations

import json
import time

import pytest

from registry.domain import comfyui, generation
from registry.domain.comfyui import generation_from_prompt, load_graph
from registry.domain.errors import GenerationParseError, InvalidError
from registry.domain.generation import Resource, parse_parameters

A1111 = (
    "masterpiece, best quality, 1girl, solo, <lora:add_detail:0.6>, <lora:epiNoiseoffset_v2:1>,"
    " looking at viewer, style: watercolor\n"
    "Negative prompt: easynegative, (worst quality:1.4),\n"
    "lowres, bad anatomy\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 2876135290, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.45, Clip skip: 2, "
    "Hires upscale: 2, Hires steps: 15, Hires upscaler: 4x-UltraSharp, "
    'Lora hashes: "add_detail: 7c6bad76eb54, epiNoiseoffset_v2: d1131f7207d6", '
    'TI hashes: "easynegative: c74b4e810b03", Version: v1.10.1'
)
CONTROLNET = (
    "a house, <lyco:wood_texture>\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 512x512, "
    "Model hash: e6bb9ea85b, Model: realisticVisionV60B1_v51VAE, "
    'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.85, '
    "Resize Mode: Crop and Resize, Low Vram: False, Processor Res: 512, Threshold A: 100, "
    "Threshold B: 200, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, "
    'Control Mode: Balanced", '
    'ControlNet 1: "Module: none, Model: None, Weight: 1", '
    "Hires upscaler: Latent (nearest-exact), Version: v1.7.0"
)
FORGE_FLUX = (
    "a photo of a cat wearing a tiny hat <lora:flux_realism:0.9>\n"
    "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, "
    "Seed: 42, Size: 896x1152, Model hash: bea01d51bd, Model: flux1-dev-bnb-nf4-v2, "
    'Lora hashes: "flux_realism: 8a1f0c2d3b4e", '
    "Version: f2.0.1v1.10.1-previous-313-g8a042934, Module 1: ae, Module 2: clip_l"
)


def test_parse_parameters_reads_every_field_of_an_a1111_text():
    g = parse_parameters(A1111)
    assert g.source == "a1111"
    assert g.prompt.startswith("masterpiece") and g.prompt.endswith("style: watercolor")
    assert g.negative_prompt == "easynegative, (worst quality:1.4),\nlowres, bad anatomy"
    assert (g.steps, g.sampler, g.scheduler, g.cfg, g.seed) == (
        28,
        "DPM++ 2M",
        "Karras",
        7.0,
        2876135290,
    )
    assert (g.width, g.height) == (512, 768)
    assert g.checkpoint == Resource("checkpoint", "v1-5-pruned-emaonly", "6ce0161689")
    assert g.vae == Resource("vae", "vae-ft-mse-840000-ema-pruned.safetensors", "735e4c3a44")
    assert g.loras == (
        Resource("lora", "add_detail", "7c6bad76eb54", 0.6),
        Resource("lora", "epiNoiseoffset_v2", "d1131f7207d6", 1.0),
    )
    assert g.embeddings == (Resource("embedding", "easynegative", "c74b4e810b03"),)
    assert g.upscalers == (Resource("upscaler", "4x-UltraSharp"),)
    assert g.extra == {
        "Denoising strength": "0.45",
        "Clip skip": "2",
        "Hires upscale": "2",
        "Hires steps": "15",
        "Version": "v1.10.1",
    }
    assert len(g.resources) == 6


def test_parse_parameters_reads_controlnet_units_and_skips_builtin_upscalers():
    g = parse_parameters(CONTROLNET)
    assert g.controlnets == (Resource("controlnet", "control_v11p_sd15_canny", "d14c016b", 0.85),)
    assert g.upscalers == ()
    assert g.loras == (Resource("lora", "wood_texture", None, 1.0),)  # a lyco tag, no weight
    assert g.negative_prompt == "" and g.prompt == "a house, <lyco:wood_texture>"


def test_parse_parameters_reads_forge_flux_text():
    g = parse_parameters(FORGE_FLUX)
    assert g.checkpoint == Resource("checkpoint", "flux1-dev-bnb-nf4-v2", "bea01d51bd")
    assert g.loras == (Resource("lora", "flux_realism", "8a1f0c2d3b4e", 0.9),)
    assert (g.scheduler, g.cfg, g.width, g.height) == ("Simple", 1.0, 896, 1152)
    assert g.extra["Distilled CFG Scale"] == "3.5" and g.extra["Module 2"] == "clip_l"


def test_parse_parameters_merges_loras_named_in_tags_and_hashes():
    text = (
        "<lora:Detail:0.5> <lora:onlytag:-0.25> <lora:split:0.7:0.3> <lora:Detail:0.9>\n"
        'Steps: 1, Seed: 2, Size: 8x8, Lora hashes: "detail: aaaaaaaaaaaa, onlyhash: bbbbbbbbbbbb"'
    )
    assert parse_parameters(text).loras == (
        Resource("lora", "Detail", "aaaaaaaaaaaa", 0.5),  # hash matched case-insensitively
        Resource("lora", "onlytag", None, -0.25),
        Resource("lora", "split", None, 0.7),
        Resource("lora", "onlyhash", "bbbbbbbbbbbb", None),  # no tag: no weight known
    )


def test_parse_parameters_reads_the_older_unquoted_ti_hashes():
    g = parse_parameters(
        "cat\nSteps: 20, Sampler: Euler, TI hashes: easynegative: c74b4e810b03, Version: v1.6.0"
    )
    assert g.embeddings == (Resource("embedding", "easynegative", "c74b4e810b03"),)


def test_parse_parameters_unquotes_escaped_values():
    g = parse_parameters('p\nSteps: 3, Seed: 4, Note: "say \\"hi\\", then: go", Size: 8x16')
    assert g.extra == {"Note": 'say "hi", then: go'}
    assert (g.steps, g.seed, g.width, g.height) == (3, 4, 8, 16)


@pytest.mark.parametrize(
    ("text", "prompt", "negative"),
    [
        ("", "", ""),
        ("just a prompt, style: anime", "just a prompt, style: anime", ""),
        ("a\r\nNegative prompt: b\r\n", "a", "b"),
        ("Negative prompt: only this", "", "only this"),
        ("a: 1, b: 2", "a: 1, b: 2", ""),  # two pairs: still prompt (A1111's rule)
    ],
)
def test_parse_parameters_reads_prompts_without_settings(text, prompt, negative):
    g = parse_parameters(text)
    assert (g.prompt, g.negative_prompt, g.steps, g.extra) == (prompt, negative, None, {})


def test_parse_parameters_is_lenient_with_odd_values():
    g = parse_parameters(
        "x\nSteps: many, Sampler: , CFG scale: high, Seed: 1.5, Size: 512, Model hash: xyz, "
        'Lora hashes: "noname, : 123456", ControlNet 0: "Module: x", ::, "a": 1, Model: m'
    )
    assert (g.steps, g.sampler, g.cfg, g.seed, g.width) == (None, None, None, None, None)
    assert g.checkpoint == Resource("checkpoint", "m", None)  # the bad hash is dropped
    assert g.loras == (Resource("lora", "noname", None), Resource("lora", "123456", None))
    assert g.controlnets == ()
    assert g.extra == {"Steps": "many", "CFG scale": "high", "Seed": "1.5", "Size": "512"}


def test_parse_parameters_refuses_text_over_the_caps():
    with pytest.raises(GenerationParseError, match="parameters text") as exc:
        parse_parameters("a" * (generation.MAX_TEXT + 1))
    assert isinstance(exc.value, InvalidError) and exc.value.code == "BadGenerationData"
    many = ", ".join(f"K{i}: {i}" for i in range(generation.MAX_SETTINGS + 1))
    with pytest.raises(GenerationParseError, match="settings"):
        parse_parameters(f"p\n{many}")
    tags = "".join(f"<lora:l{i}:1>" for i in range(generation.MAX_RESOURCES + 2))
    with pytest.raises(GenerationParseError, match="LoRA tags|resources"):
        parse_parameters(f"{tags}\nSteps: 1, Seed: 1, Size: 1x1")


@pytest.mark.parametrize(
    "line",
    [
        "a" * generation.MAX_TEXT,
        ":" * generation.MAX_TEXT,
        '"' * generation.MAX_TEXT,
        "Key: " + '"\\' * (generation.MAX_TEXT // 2 - 5),
        "<lora:" * (generation.MAX_TEXT // 6),
        ("k" * 60 + ": " + "v" * 60 + ", ") * 100,
        "p\n" + " " * (generation.MAX_TEXT - 10) + "x",
        "a" + " " * (generation.MAX_TEXT - 10) + ":",
        "a:" + " " * (generation.MAX_TEXT - 10) + "x",
    ],
)
def test_parse_parameters_takes_linear_time_on_hostile_text(line):
    started = time.perf_counter()
    try:
        parse_parameters(line[: generation.MAX_TEXT])
    except GenerationParseError as exc:
        assert "settings" in exc.message
    assert time.perf_counter() - started < 1.0


def api_graph() -> dict[str, object]:
    """ComfyUI's default graph plus a LoRA, an upscaler and an embedding, as `prompt` holds it."""
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd_xl_base.safetensors"},
        },
        "10": {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": "pixel-art-xl.safetensors",
                "strength_model": 0.8,
                "strength_clip": 1,
                "model": ["4", 0],
                "clip": ["4", 1],
            },
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a castle, pixel art", "clip": ["10", 1]},
        },
        "7": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "embedding:badhandv4, blurry", "clip": ["10", 1]},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 1024, "height": 768, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 156680208700286,
                "steps": 25,
                "cfg": 6.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "denoise": 1,
                "model": ["10", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["11", 0]}},
        "11": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
        "12": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}},
        "13": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": ["99", 0]}},
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
        },
    }


def test_generation_from_prompt_reads_loaders_sampler_and_linked_prompts():
    g = generation_from_prompt(load_graph(json.dumps(api_graph())))
    assert g.source == "comfyui"
    assert (g.prompt, g.negative_prompt) == ("a castle, pixel art", "embedding:badhandv4, blurry")
    assert (g.steps, g.cfg, g.seed, g.sampler, g.scheduler) == (
        25,
        6.5,
        156680208700286,
        "dpmpp_2m",
        "karras",
    )
    assert (g.width, g.height) == (1024, 768)
    assert g.checkpoint == Resource("checkpoint", "sd_xl_base.safetensors")
    assert g.loras == (Resource("lora", "pixel-art-xl.safetensors", None, 0.8),)
    assert g.vae == Resource("vae", "sdxl_vae.safetensors")
    assert g.upscalers == (Resource("upscaler", "4x-UltraSharp.pth"),)
    assert g.embeddings == (Resource("embedding", "badhandv4"),)
    assert g.controlnets == ()  # its file name is a link, not a value


def test_generation_from_prompt_is_lenient_with_odd_graphs():
    odd = {"1": "not a node", "2": {"class_type": "KSampler", "inputs": {"positive": ["404", 0]}}}
    g = generation_from_prompt(odd | {"3": {"class_type": "LoraLoader", "inputs": None}})
    assert (g.prompt, g.steps, g.loras, g.checkpoint) == ("", None, (), None)


def test_generation_from_prompt_reads_the_loaders_a_workflow_pull_knows():
    graph = api_graph() | {
        "14": {
            "class_type": "CLIPVisionLoader",
            "inputs": {"clip_name": "clip_vision_g.safetensors"},
        },
        "15": {"class_type": "LoraLoader", "inputs": {"lora_name": "SDXL\\detail.safetensors"}},
    }
    g = generation_from_prompt(graph)
    assert Resource("clip_vision", "clip_vision_g.safetensors") in g.others
    assert Resource("lora", "SDXL/detail.safetensors") in g.loras  # a path under loras/


def test_generation_from_prompt_refuses_a_model_name_that_escapes_its_folder():
    graph = api_graph()
    graph["10"]["inputs"]["lora_name"] = "../../../etc/passwd"  # type: ignore[index]
    with pytest.raises(GenerationParseError, match=r"\.\."):
        generation_from_prompt(graph)


def test_load_graph_accepts_nesting_up_to_the_cap():
    depth = comfyui.MAX_DEPTH
    assert load_graph('{"a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}")
    with pytest.raises(GenerationParseError, match="nested deeper than"):
        load_graph('{"a": ' + "[" * depth + "]" * depth + "}")
    text = '[{ "quoted [[" \\' * 10_000  # brackets, escaped quotes and backslashes
    assert load_graph(json.dumps({"text": text, "n": [[1]]}))["text"] == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
        ('{"a":' * 100_000 + "1" + "}" * 100_000, "nested deeper than"),
        ('{"nodes": [' + ",".join(["{}"] * 1_000_000) + "]}", "values"),
        ('{"nodes": [' + ",".join(['{"id": 1}'] * 20_000) + "]}", "20000 nodes"),
        ('{"nodes": [' + ",".join(['""'] * 1_000_000) + "]}", "strings"),
        (json.dumps({str(i): {} for i in range(20_000)}), "20000 nodes"),
        ("x" * (comfyui.MAX_JSON_BYTES + 1), "characters"),
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"a": ' + "9" * 5000 + "}", "not JSON"),  # past int's digit limit
    ],
)
def test_load_graph_refuses_hostile_json_quickly(text, reason):
    started = time.perf_counter()
    with pytest.raises(GenerationParseError, match=reason) as exc:
        load_graph(text, "workflow")
    assert time.perf_counter() - started < 2.0
    assert str(exc.value.detail["reason"]).startswith("workflow: ")
