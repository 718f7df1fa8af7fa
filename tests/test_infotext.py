"""The A1111 infotext: exact layout, parsing of every variant, typed fields, sampler names."""

from __future__ import annotations

import random

import pytest

from webui.metadata.infotext import build_infotext, infotext_to_fields, parse_infotext
from webui.samplers_names import (
    A1111_SAMPLERS,
    SAMPLERS,
    SCHEDULE_TYPES,
    normalize_sampler,
    normalize_schedule_type,
    resolve_sampler_and_schedule,
    split_legacy_sampler,
)

REFERENCE_TEXT = (
    "portrait of an elderly fisherman, oil painting, (dramatic rim light:1.2)\n"
    "Negative prompt: lowres, blurry, (deformed hands:1.3)\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 2874651023, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)


# ----------------------------------------------------------------------------- building


def test_build_matches_a1111_example_exactly():
    params = {  # deliberately out of order: A1111's order must be applied
        "Version": "v1.10.1",
        "Model": "v1-5-pruned-emaonly",
        "Seed": 2874651023,
        "Size": (512, 768),
        "CFG scale": 7.0,
        "Model hash": "6ce0161689",
        "Schedule type": "Karras",
        "Sampler": "DPM++ 2M",
        "Steps": 20,
    }
    text = build_infotext(
        "portrait of an elderly fisherman, oil painting, (dramatic rim light:1.2)",
        "lowres, blurry, (deformed hands:1.3)",
        params,
    )
    assert text == REFERENCE_TEXT


def test_build_orders_extras_unknown_keys_and_version():
    text = build_infotext(
        "a cat",
        "",
        {
            "Version": "v1.10.1",
            "My extension": "on",
            "TI hashes": {"bad-hands": "aabbccddeeff"},
            "Lora hashes": {"a": "0123abcd4567", "b": "89abcdef0123"},
            "Hires upscaler": "Latent",
            "Hires steps": 10,
            "Hires upscale": 2.0,
            "Denoising strength": 0.7,
            "Clip skip": 2,
            "Other": 1.25,
            "Size": "512x512",
            "Seed": 1,
            "Steps": 20,
            "Face restoration": None,
            "VAE": "",
        },
    )
    assert text == (
        "a cat\n"
        "Steps: 20, Seed: 1, Size: 512x512, Denoising strength: 0.7, Clip skip: 2, "
        "Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, "
        'Lora hashes: "a: 0123abcd4567, b: 89abcdef0123", TI hashes: "bad-hands: aabbccddeeff", '
        "My extension: on, Other: 1.25, Version: v1.10.1"
    )
    assert "Negative prompt" not in text


def test_value_formatting_and_quoting():
    text = build_infotext(
        "p",
        "n",
        {
            "Steps": 30,
            "CFG scale": 7.5,
            "Denoising strength": 0.75,
            "Seed": -1,
            "Tiling": True,
            "Note": 'say "hi"',
            "Quoted": '"x"',
            "Multi": "line one\nline two",
            "Colon": "a:b",
        },
    )
    line = text.split("\n")[-1]
    assert line == (
        "Steps: 30, CFG scale: 7.5, Seed: -1, Denoising strength: 0.75, Tiling: True, "
        'Note: say "hi", Quoted: "\\"x\\"", Multi: "line one\\nline two", Colon: "a:b"'
    )
    parsed = parse_infotext(text)
    assert parsed["Note"] == 'say "hi"'
    assert parsed["Quoted"] == '"x"'
    assert parsed["Multi"] == "line one\nline two"
    assert parsed["Colon"] == "a:b"


def test_empty_negative_and_no_params():
    assert build_infotext("only a prompt", "", {}) == "only a prompt"
    assert build_infotext("", "bad", {"Steps": 1, "Seed": 2, "Size": "8x8"}) == (
        "Negative prompt: bad\nSteps: 1, Seed: 2, Size: 8x8"
    )


# ----------------------------------------------------------------------------- parsing


def test_parse_reference_example():
    parsed = parse_infotext(REFERENCE_TEXT)
    assert parsed == {
        "Prompt": "portrait of an elderly fisherman, oil painting, (dramatic rim light:1.2)",
        "Negative prompt": "lowres, blurry, (deformed hands:1.3)",
        "Steps": "20",
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": "7",
        "Seed": "2874651023",
        "Size": "512x768",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Version": "v1.10.1",
    }


def test_lora_hashes_quoting_exact():
    text = build_infotext("x", "", {"Steps": 20, "Seed": 1, "Lora hashes": "a: 0123abcd4567, b: 89abcdef0123"})
    assert text.endswith('Lora hashes: "a: 0123abcd4567, b: 89abcdef0123"')
    parsed = parse_infotext(text)
    assert parsed["Lora hashes"] == "a: 0123abcd4567, b: 89abcdef0123"
    fields = infotext_to_fields(parsed)
    assert fields["lora_hashes"] == {"a": "0123abcd4567", "b": "89abcdef0123"}


def test_round_trip_chinese_multiline_and_typed_fields():
    prompt = "一位老渔夫的肖像，油画\n(戏剧性的轮廓光:1.2), <lora:detail:0.6>\n  indented line"
    negative = "低分辨率, 模糊\nsecond negative line"
    params = {
        "Steps": 28,
        "Sampler": "Euler a",
        "Schedule type": "Automatic",
        "CFG scale": 6.5,
        "Seed": 4294967295,
        "Size": (832, 1216),
        "Model hash": "31e35c80fc",
        "Model": "sd_xl_base_1.0",
        "Variation seed": 12345,
        "Variation seed strength": 0.25,
        "Seed resize from": (768, 1152),
        "Denoising strength": 0.45,
        "Clip skip": 2,
        "Hires upscale": 1.5,
        "Hires steps": 12,
        "Hires upscaler": "R-ESRGAN 4x+",
        "Lora hashes": {"detail": "0123abcd4567"},
        "TI hashes": {"EasyNegative": "c74b4e810b03"},
        "Style": "Studio portrait",
        "Version": "v1.10.1",
    }
    text = build_infotext(prompt, negative, params)
    fields = infotext_to_fields(parse_infotext(text))
    assert fields["prompt"] == prompt.strip()
    assert fields["negative_prompt"] == negative
    assert fields == {
        "prompt": prompt.strip(),
        "negative_prompt": negative,
        "steps": 28,
        "sampler_name": "Euler a",
        "scheduler": "Automatic",
        "cfg_scale": 6.5,
        "seed": 4294967295,
        "width": 832,
        "height": 1216,
        "sd_model_hash": "31e35c80fc",
        "sd_model_name": "sd_xl_base_1.0",
        "sd_model_checkpoint": "sd_xl_base_1.0",
        "subseed": 12345,
        "subseed_strength": 0.25,
        "seed_resize_from_w": 768,
        "seed_resize_from_h": 1152,
        "denoising_strength": 0.45,
        "clip_skip": 2,
        "enable_hr": True,
        "hr_scale": 1.5,
        "hr_second_pass_steps": 12,
        "hr_upscaler": "R-ESRGAN 4x+",
        "lora_hashes": {"detail": "0123abcd4567"},
        "ti_hashes": {"EasyNegative": "c74b4e810b03"},
        "styles": ["Studio portrait"],
        "version": "v1.10.1",
        "extra": {},
    }
    assert isinstance(fields["cfg_scale"], float) and isinstance(fields["steps"], int)


def test_img2img_inpaint_fields():
    text = build_infotext(
        "face",
        "",
        {
            "Steps": 30,
            "Sampler": "DPM++ 2M SDE",
            "Schedule type": "Exponential",
            "CFG scale": 5,
            "Seed": 7,
            "Size": "512x512",
            "Denoising strength": 0.4,
            "Mask blur": 4,
            "Inpaint area": "Only masked",
            "Masked area padding": 32,
            "Masked content": "latent noise",
            "Mask mode": "Inpaint not masked",
            "Hires resize": (1024, 1536),
        },
    )
    fields = infotext_to_fields(text)
    assert fields["mask_blur"] == 4
    assert fields["inpaint_full_res"] is True
    assert fields["inpaint_full_res_padding"] == 32
    assert fields["inpainting_fill"] == 2
    assert fields["inpainting_mask_invert"] == 1
    assert fields["denoising_strength"] == 0.4
    assert (fields["hr_resize_x"], fields["hr_resize_y"]) == (1024, 1536)
    assert fields["enable_hr"] is True
    assert (fields["sampler_name"], fields["scheduler"]) == ("DPM++ 2M SDE", "Exponential")


def test_pre_1_9_combined_sampler():
    text = (
        "masterpiece, 1girl\nNegative prompt: worst quality\n"
        "Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x512, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.6.0"
    )
    parsed = parse_infotext(text)
    assert parsed["Sampler"] == "DPM++ 2M Karras"
    assert "Schedule type" not in parsed
    fields = infotext_to_fields(parsed)
    assert (fields["sampler_name"], fields["scheduler"]) == ("DPM++ 2M", "Karras")

    old = "x\nSteps: 20, Sampler: DPM++ 2M SDE Exponential, CFG scale: 7, Seed: 1"
    assert infotext_to_fields(old)["scheduler"] == "Exponential"
    assert infotext_to_fields(old)["sampler_name"] == "DPM++ 2M SDE"
    plain = infotext_to_fields("x\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    assert (plain["sampler_name"], plain["scheduler"]) == ("Euler a", "Automatic")


def test_forge_keys_after_version():
    text = (
        "a photo of a woman, golden hour\n"
        "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, "
        "Seed: 3151236520, Size: 896x1152, Model hash: bea01d51bd, Model: flux1-dev-bnb-nf4-v2, "
        "Version: f2.0.1v1.10.1-previous-313-g8a042934, Module 1: ae, Module 2: clip_l, "
        "Module 3: t5xxl_fp16"
    )
    parsed = parse_infotext(text)
    assert parsed["Module 3"] == "t5xxl_fp16"
    assert parsed["Version"] == "f2.0.1v1.10.1-previous-313-g8a042934"
    fields = infotext_to_fields(parsed)
    assert fields["seed"] == 3151236520
    assert (fields["width"], fields["height"]) == (896, 1152)
    assert (fields["sampler_name"], fields["scheduler"]) == ("Euler", "Simple")
    assert fields["extra"] == {
        "Distilled CFG Scale": "3.5",
        "Module 1": "ae",
        "Module 2": "clip_l",
        "Module 3": "t5xxl_fp16",
    }


def test_sdnext_order_and_scheduler_key():
    text = (
        "cinematic portrait\nNegative prompt: ugly\n"
        "Steps: 30, Seed: 1234, Sampler: DPM++ 2M, Scheduler: Karras, CFG scale: 6, "
        "Size: 1024x1024, Parser: Full parser, Model: juggernautXL_v9, Model hash: c9e3e68f89, "
        "Backend: Diffusers, App: SD.Next, Version: 1a2b3c4, Operations: txt2img"
    )
    fields = infotext_to_fields(text)
    assert fields["steps"] == 30 and fields["seed"] == 1234 and fields["cfg_scale"] == 6.0
    assert (fields["sampler_name"], fields["scheduler"]) == ("DPM++ 2M", "Karras")
    assert fields["negative_prompt"] == "ugly"
    assert fields["extra"]["App"] == "SD.Next"
    size_split = infotext_to_fields("p\nSteps: 5, Seed: 1, Size-1: 640, Size-2: 480")
    assert (size_split["width"], size_split["height"]) == (640, 480)


def test_short_last_line_is_prompt():
    text = "a cat\nstyle: watercolor, mood: calm"
    parsed = parse_infotext(text)
    assert parsed == {"Prompt": "a cat\nstyle: watercolor, mood: calm", "Negative prompt": ""}
    with_params = parse_infotext("a cat\nNegative prompt: dog\nSteps: 1, Seed: 2, CFG scale: 3")
    assert with_params["Prompt"] == "a cat" and with_params["Negative prompt"] == "dog"


def test_crlf_and_bare_flags():
    text = "p\r\nNegative prompt: n\r\nSteps: 20, Hypertile, Seed: 5, CFG scale: 4, NGMS: 0.5"
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "p" and parsed["Negative prompt"] == "n"
    assert parsed["Seed"] == "5" and parsed["NGMS"] == "0.5" and "Hypertile" not in parsed


def test_bad_values_go_to_extra():
    fields = infotext_to_fields("p\nSteps: many, Seed: 12.0, CFG scale: high, Size: big, Sampler: Foo Karras")
    assert fields["extra"]["Steps"] == "many"
    assert fields["extra"]["CFG scale"] == "high"
    assert fields["extra"]["Size"] == "big"
    assert fields["seed"] == 12
    assert (fields["sampler_name"], fields["scheduler"]) == ("Foo", "Karras")


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "",
        "\n\n\n",
        ":::,,,",
        'Steps: "unterminated, Seed: 1, Size: 2x2',
        "Negative prompt:",
        '\x00\x01\x02"\\',
        b"\xff\xfe\x00bytes",
        ", , , : : :",
        "Steps: 1, Steps: 2, Steps: 3",
        12345,
    ],
)
def test_garbage_never_raises(garbage):
    parsed = parse_infotext(garbage)  # type: ignore[arg-type]
    assert isinstance(parsed, dict) and "Prompt" in parsed and "Negative prompt" in parsed
    fields = infotext_to_fields(parsed)
    assert isinstance(fields["extra"], dict)


def test_random_fuzz_never_raises():
    rng = random.Random(1234)
    alphabet = 'ab :,"\\\n\r\x00xX1234567890Negative prompt:Steps'
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        infotext_to_fields(parse_infotext(text))


# ----------------------------------------------------------------------------- sampler names


def test_sampler_tables():
    assert SAMPLERS[0] == "DPM++ 2M" and "DEIS" in SAMPLERS
    assert set(SAMPLERS) - {"DEIS"} == set(A1111_SAMPLERS)  # every A1111 1.10 sampler runs here
    assert SCHEDULE_TYPES == ("Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform",
                              "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM", "Beta")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M SDE Exponential", ("DPM++ 2M SDE", "Exponential")),
        ("DPM++ 2M SDE Heun Karras", ("DPM++ 2M SDE Heun", "Karras")),
        ("DPM++ 2M SDE Heun", ("DPM++ 2M SDE Heun", "Automatic")),
        ("Euler a", ("Euler a", "Automatic")),
        ("euler a sgm uniform", ("Euler a", "SGM Uniform")),
        ("DDIM", ("DDIM", "Automatic")),
        ("k_dpmpp_2m_ka", ("DPM++ 2M", "Karras")),
        ("", ("", "Automatic")),
    ],
)
def test_split_legacy_sampler(name, expected):
    assert split_legacy_sampler(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("DPM++ 2M", "DPM++ 2M"),
        ("dpm++ 2m", "DPM++ 2M"),
        ("k_dpmpp_2m", "DPM++ 2M"),
        ("dpmpp_2m", "DPM++ 2M"),
        ("euler_a", "Euler a"),
        ("k_euler_a", "Euler a"),
        ("euler_ancestral", "Euler a"),
        ("uni_pc", "UniPC"),
        ("DPM++ 2M Karras", "DPM++ 2M"),
        ("deis", "DEIS"),
        ("DPM++ 3M SDE", "DPM++ 3M SDE"),  # runs as the nearest diffusers sampler
        ("k_dpm_ad", "DPM adaptive"),
        ("nonsense", None),
        (None, None),
    ],
)
def test_normalize_sampler(name, expected):
    assert normalize_sampler(name) == expected


def test_normalize_schedule_and_resolve():
    assert normalize_schedule_type("karras") == "Karras"
    assert normalize_schedule_type("sgm_uniform") == "SGM Uniform"
    assert normalize_schedule_type(None) == "Automatic"
    assert normalize_schedule_type("Align Your Steps") == "Align Your Steps"
    assert normalize_schedule_type("normal") == "Normal"  # ComfyUI's scheduler name
    assert normalize_schedule_type("kl_optimal") == "KL Optimal"
    assert normalize_schedule_type("nonsense") is None
    assert resolve_sampler_and_schedule("DPM++ 2M Karras", "Uniform") == ("DPM++ 2M", "Karras")
    assert resolve_sampler_and_schedule("Euler", "exponential") == ("Euler", "Exponential")
    assert resolve_sampler_and_schedule("k_lms", None) == ("LMS", "Automatic")
