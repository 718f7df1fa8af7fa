"""Regions: columns/rows with their own prompts, and a LoRA acting only inside its region.

Tiny SD1 model on the CPU, 64x64 pictures (8x8 latents: two equal columns are 4 latent cells,
32 pixels, each). Halves are compared away from the seam (the VAE mixes neighbouring pixels).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from webui.errors import UserError
from webui.request import build_request
from webui.serving.service import Service
from webui.settings import Limits, Settings

TWO = {"mode": "Columns", "ratios": "1,1"}
LEFT, RIGHT = slice(0, 26), slice(38, 64)  # columns of pixels well inside each half


@pytest.fixture(scope="module")
def svc(tiny_models, tiny_loras, tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("regions-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "tiny.safetensors")
    shutil.copy(tiny_models["sdxl"].file, root / "Stable-diffusion" / "xl.safetensors")
    (root / "Lora").mkdir()
    shutil.copy(tiny_loras["face"][0], root / "Lora" / "face.safetensors")
    s = Service.create(Settings(models_dir=root, outputs_dir=tmp_path_factory.mktemp("out"), device="cpu"))
    yield s
    s.close()


def gen(svc, prompt, regions=None, task="txt2img", **fields):
    base = dict(prompt=prompt, negative_prompt="blurry", sd_model_checkpoint="tiny", seed=11, steps=3, width=64, height=64,
                sampler_name="Euler", cfg_scale=7, save_images=False)
    if regions:
        base["regions"] = regions
    base.update(fields)
    return svc.generate(svc.request(base, task))


def px(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"), dtype=np.float64)


def unet_patched(svc) -> bool:
    return "forward" in svc.manager.active.pipe.unet.__dict__


def test_a_lora_acts_only_inside_its_region(svc):
    plain = gen(svc, "portrait of a woman BREAK a garden", TWO)
    lora = gen(svc, "portrait of a woman <lora:face:1.5> BREAK a garden", TWO)
    d = np.abs(px(lora) - px(plain))
    left, right = d[:, LEFT].mean(), d[:, RIGHT].mean()
    print(f"isolation: left half differs by {left:.2f}, right half by {right:.2f} (of 255)")
    assert left > 3, "the LoRA should change its own region"
    assert right < left / 3, f"the LoRA leaks into the other region: left {left:.2f}, right {right:.2f}"
    # The same LoRA in the right region instead: now the left half stays.
    mirrored = gen(svc, "portrait of a woman BREAK a garden <lora:face:1.5>", TWO)
    d = np.abs(px(mirrored) - px(plain))
    assert d[:, LEFT].mean() < d[:, RIGHT].mean() / 3
    # Without it again: the plain two-region picture, exactly (nothing stays active).
    assert np.array_equal(px(gen(svc, "portrait of a woman BREAK a garden", TWO)), px(plain))
    assert not unet_patched(svc)
    assert "Regions mode: Columns" in lora.infotexts[0] and "Regions ratios: \"1,1\"" in lora.infotexts[0]


def test_two_identical_region_prompts_give_the_plain_picture(svc):
    plain = gen(svc, "portrait of a woman")
    same = gen(svc, "portrait of a woman BREAK portrait of a woman", TWO)
    assert np.abs(px(same) - px(plain)).max() <= 1
    # ADDCOMM: the common part goes into every region.
    common = gen(svc, "portrait ADDCOMM of a woman BREAK of a woman", {"mode": "Rows", "ratios": "2,1"})
    assert np.abs(px(common) - px(gen(svc, "portrait, of a woman"))).max() <= 1


def test_regions_change_the_picture_by_region(svc):
    """Different prompts per column: each half is its own prompt's picture, mostly."""
    red, blue = gen(svc, "red"), gen(svc, "blue sky")
    both = gen(svc, "red BREAK blue sky", TWO)
    assert np.abs(px(both) - px(red))[:, LEFT].mean() < np.abs(px(both) - px(blue))[:, LEFT].mean()
    assert np.abs(px(both) - px(blue))[:, RIGHT].mean() < np.abs(px(both) - px(red))[:, RIGHT].mean()


def test_hires_keeps_the_regions(svc):
    r = gen(svc, "red BREAK blue sky", TWO, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent",
            denoising_strength=0.5, hr_second_pass_steps=2)
    assert r.images[0].size == (96, 96) and not unet_patched(svc)


def test_the_unet_is_restored_after_an_error(svc, monkeypatch):
    import webui.engine.extensions.regions as mod

    def broken(*a, **k):
        raise RuntimeError("boom")

    before = gen(svc, "red BREAK blue sky", TWO)
    monkeypatch.setattr(mod, "bounds", broken)
    with pytest.raises(Exception):
        gen(svc, "red <lora:face:1> BREAK blue sky", TWO, seed=12)
    assert not unet_patched(svc)
    monkeypatch.undo()
    assert np.array_equal(px(gen(svc, "red BREAK blue sky", TWO)), px(before))
    assert np.array_equal(px(gen(svc, "red")), px(gen(svc, "red", seed=11)))


@pytest.mark.parametrize("prompt, regions, field, words", [
    ("a BREAK b", {"ratios": "1,0"}, "regions", "above 0"),
    ("a BREAK b", {"ratios": "1,-1"}, "regions", "above 0"),
    ("a BREAK b", {"ratios": "1,1,1"}, "regions", "3 ratios"),
    ("a BREAK b BREAK c", {"ratios": "1,1"}, "regions", "3 region prompts"),
    ("a BREAK b BREAK c BREAK d BREAK e", {"ratios": "1,1,1,1"}, "prompt", "at most 4"),
    ("a BREAK b BREAK c BREAK d BREAK e", {"ratios": "1,1,1,1,1"}, "regions", "2 to 4"),
    ("a", {"ratios": "1"}, "regions", "2 to 4"),
    ("a BREAK b", {"ratios": "x,1"}, "regions", ""),
    ("a BREAK b", {"mode": "Diagonal"}, "regions", "Columns"),
    ("a BREAK b", "1,1", "regions", ""),
])
def test_bad_regions_are_user_errors_naming_the_field(prompt, regions, field, words):
    with pytest.raises(UserError) as e:
        build_request({"prompt": prompt, "regions": regions}, Limits())
    assert e.value.field == field and words in str(e.value)


def test_a_ratio_too_small_for_the_latent_is_a_user_error(svc):
    with pytest.raises(UserError) as e:
        gen(svc, "a BREAK b", {"ratios": "1,100"})
    assert e.value.field == "regions" and not unet_patched(svc)


def test_infotext_keys_read_back_into_the_same_request(svc):
    from webui.metadata.infotext import infotext_to_fields

    r = gen(svc, "red ADDCOMM hat BREAK shoes", {"mode": "Rows", "ratios": "2,1"})
    fields = infotext_to_fields(r.infotexts[0])
    assert fields["regions"] == {"mode": "Rows", "ratios": "2,1"}
    assert fields["prompt"] == "red ADDCOMM hat BREAK shoes"
    again = build_request({k: v for k, v in fields.items() if k != "extra"}, Limits())
    assert again.regions == r.request.regions


def test_the_txt2img_accordion_gives_the_request_field():
    from webui.ui.regions_panel import request_fields

    values = {"prompt": "a BREAK b", "regions_enabled": True, "regions_mode": "Rows", "regions_ratios": "1,3"}
    fields = request_fields(values)
    assert fields == {"prompt": "a BREAK b", "regions": {"mode": "Rows", "ratios": "1,3"}}
    assert build_request(fields, Limits()).regions.ratios == (1.0, 3.0)
    assert request_fields({**values, "regions_enabled": False}) == {"prompt": "a BREAK b"}


def test_sdxl_and_img2img_take_regions_too(svc):
    """SDXL's pooled embeddings are the region's as well: identical region prompts = plain."""
    plain = gen(svc, "a hat, red", sd_model_checkpoint="xl")
    same = gen(svc, "a hat ADDCOMM red BREAK red", TWO, sd_model_checkpoint="xl")
    assert np.abs(px(same) - px(plain)).max() <= 1
    assert np.abs(px(gen(svc, "a red hat BREAK blue sky", TWO, sd_model_checkpoint="xl")) - px(plain)).max() > 1
    init = gen(svc, "red").images[0]
    plain = gen(svc, "blue", task="img2img", init_image=init, denoising_strength=0.6)
    same = gen(svc, "blue BREAK blue", TWO, task="img2img", init_image=init, denoising_strength=0.6)
    assert np.abs(px(same) - px(plain)).max() <= 1 and "Regions mode" in same.infotexts[0]


def test_regions_are_not_batched_and_a_crop_pass_uses_the_region_at_its_centre():
    from webui.engine import extensions
    from webui.engine.extensions.regions import Regions
    from webui.engine.plan import PassSpec

    req = build_request({"prompt": "a BREAK b", "regions": TWO}, Limits())
    assert extensions.batch_key(req) is None
    ext = Regions(build_request({"prompt": "a BREAK b BREAK c", "regions": {"ratios": "1,2,1"}}, Limits()).regions)
    spec = dict(task="img2img", groups=(), seeds=(1,), width=64, height=64, steps=1, cfg_scale=7, sampler="Euler",
                schedule="Automatic", source_size=(400, 100))
    assert ext._chosen(PassSpec(**spec)) == [0, 1, 2]
    assert ext._chosen(PassSpec(**spec, region=(0, 0, 40, 100))) == [0]
    assert ext._chosen(PassSpec(**spec, region=(150, 0, 250, 50))) == [1]
    assert ext._chosen(PassSpec(**spec, region=(320, 0, 400, 100))) == [2]
    assert ext.for_subpass(None, "a face", "") is None and ext.for_subpass(None, "x BREAK y BREAK z", "") is ext
