"""Checkpoint loading, shipped configs and tiny models: behaviour with real files, no mocks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from webui.models import checkpoint_configs as cc
from webui.models import checkpoints as ck
from webui.models import tiny_models as tm
from webui.errors import UserError

ALL_FAMILIES = ["sd1", "sd1-inpaint", "sd2", "sd2-inpaint", "sdxl", "sdxl-inpaint"]
PIPELINES = {
    "sd1": "StableDiffusionPipeline",
    "sd1-inpaint": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLPipeline",
}


def generate(pipe, family: str, seed: int = 7) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(
        prompt="a portrait of a woman, soft light",
        negative_prompt="blurry",
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    if family.endswith("-inpaint"):
        mask = np.zeros((64, 64), np.uint8)
        mask[16:48, 16:48] = 255
        kwargs.update(image=Image.new("RGB", (64, 64), (180, 120, 90)), mask_image=Image.fromarray(mask))
    with torch.no_grad():
        return pipe(**kwargs).images[0]


def _config(module) -> dict:
    cfg = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
    metadata = {"dtype", "torch_dtype", "transformers_version", "architectures"}
    return {k: v for k, v in cfg.items() if not k.startswith("_") and k not in metadata}


def assert_same_weights(a, b, names) -> None:
    for name in names:
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys(), name
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key}"


# ---- tokenizer ------------------------------------------------------------------------------


def test_shipped_clip_tokenizer_matches_clip_ids():
    tok = ck.make_tokenizer()
    assert len(tok) == 49408
    # Ids as every released SD text encoder expects them.
    assert tok("a portrait of a woman").input_ids == [49406, 320, 5352, 539, 320, 2308, 49407]
    assert tok.pad_token_id == 49407 and tok.model_max_length == 77
    assert ck.make_tokenizer(ck.PAD_ZERO).pad_token_id == 0  # SD2 / SDXL second tokenizer


# ---- folder == single file --------------------------------------------------------------------


@pytest.mark.parametrize("family", ["sd1", "sd1-inpaint", "sdxl"])
def test_folder_and_single_file_give_the_same_model_and_image(tiny_models, family):
    model = tiny_models[family]
    from_folder, fam_a = ck.load_pipeline(model.folder)
    from_file, fam_b = ck.load_pipeline(model.file)
    assert fam_a == fam_b == family
    assert type(from_folder).__name__ == type(from_file).__name__ == PIPELINES[family]
    assert getattr(from_file, "safety_checker", None) is None
    parts = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    assert_same_weights(from_folder, from_file, parts)
    for part in parts:  # same architecture, so the same config (metadata aside)
        a, b = (_config(getattr(p, part)) for p in (from_folder, from_file))
        assert a == b, part
    image_a, image_b = generate(from_folder, family), generate(from_file, family)
    assert image_a.shape == (64, 64, 3)
    # Bit-identical weights; the float images may still differ in the last bit because BLAS
    # kernels round differently for memory-mapped (unaligned) and freshly allocated tensors.
    np.testing.assert_allclose(image_a, image_b, rtol=0, atol=1e-5)
    assert np.array_equal(generate(from_file, family), image_b)  # same seed, same pixels


@pytest.mark.parametrize("family", ["sd1", "sd1-inpaint", "sdxl"])
def test_detect_family_of_single_files(tiny_models, family):
    shapes = ck.read_shapes(tiny_models[family].file)
    assert ck.detect_family(shapes) == family
    assert shapes[cc.UNET + "input_blocks.0.0.weight"][1] == (9 if family.endswith("inpaint") else 4)


def _full_size_shapes(family: str) -> dict[str, tuple[int, ...]]:
    """Original-layout tensor shapes of a full-size model, built on the meta device from the shipped configs."""
    import diffusers
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = cc.CONFIGS_DIR / family
    with init_empty_weights():
        unet = diffusers.UNet2DConditionModel.from_config(cc.shipped_config(family, "unet"))
        vae = diffusers.AutoencoderKL.from_config(cc.shipped_config(family, "vae"))
        te_config = CLIPTextConfig.from_pretrained(folder / "text_encoder")
        tensors = {**tm.unet_to_original(unet), **tm.vae_to_original(vae)}
        if family.startswith("sd2"):
            # The original OpenCLIP-H tower has 24 blocks; diffusers keeps the 23 SD2 uses.
            te_config.num_hidden_layers += 1
            tensors.update(tm.open_clip_to_original(CLIPTextModel(te_config), cc.OPENCLIP_SD2))
        elif family.startswith("sdxl"):
            te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
            tensors.update(tm.clip_to_original(CLIPTextModel(te_config), cc.CLIP_XL))
            tensors.update(tm.open_clip_to_original(te2, cc.OPENCLIP_XL))
        else:
            tensors.update(tm.clip_to_original(CLIPTextModel(te_config), cc.CLIP_SD1))
    return {k: tuple(v.shape) for k, v in tensors.items()}


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_full_size_layouts_use_the_shipped_configs_unchanged(family):
    shapes = _full_size_shapes(family)
    assert ck.detect_family(shapes) == family
    assert cc.infer_configs(shapes, family) == {}


def test_tiny_model_sizes_are_derived_from_shapes(tiny_models):
    derived = cc.infer_configs(ck.read_shapes(tiny_models["sdxl"].file), "sdxl")
    assert derived["unet"]["block_out_channels"] == [32, 64, 64]
    assert derived["unet"]["transformer_layers_per_block"] == [1, 2, 2]
    assert derived["unet"]["addition_time_embed_dim"] == 8
    assert derived["text_encoder_2"]["num_hidden_layers"] == 10
    assert derived["text_encoder_2"]["projection_dim"] == 32
    assert derived["text_encoder_2"]["num_attention_heads"] == cc.attention_heads(48) == 1


def test_derived_config_folder_is_cached_by_content(tiny_models, tmp_path):
    shapes = ck.read_shapes(tiny_models["sd1"].file)
    derived = cc.infer_configs(shapes, "sd1")
    with cc.config_folder("sd1", derived, tmp_path) as first:
        assert json.loads((first / "unet" / "config.json").read_text())["block_out_channels"] == [32, 32, 64, 64]
    with cc.config_folder("sd1", derived, tmp_path) as second:
        assert second == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # nothing half-written left behind
    with cc.config_folder("sd1", {}, tmp_path) as shipped:
        assert shipped == cc.CONFIGS_DIR / "sd1"


# ---- bad files ------------------------------------------------------------------------------


def test_truncated_safetensors_is_a_user_error(tiny_models, tmp_path):
    data = tiny_models["sd1"].file.read_bytes()
    bad = tmp_path / "half-download.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="half-download.safetensors"):
        ck.load_pipeline(bad)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="garbage.safetensors"):
        ck.read_shapes(garbage)


def test_unrelated_safetensors_is_a_user_error(tmp_path):
    other = tmp_path / "not-a-model.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(4, 4)}, other)
    with pytest.raises(UserError, match="not-a-model.safetensors is not a Stable Diffusion checkpoint"):
        ck.load_pipeline(other)
    lora = tmp_path / "face-detail.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 4)}, lora)
    with pytest.raises(UserError, match="LoRA"):
        ck.detect_family(ck.read_shapes(lora))


def test_plain_ckpt_state_dict_loads(tiny_models, tmp_path):
    ckpt = tmp_path / "old-style.ckpt"
    torch.save({"state_dict": load_file(tiny_models["sd1"].file), "global_step": 1000}, ckpt)
    assert ck.detect_family(ck.read_shapes(ckpt)) == "sd1"
    pipe, family = ck.load_pipeline(ckpt)
    reference, _ = ck.load_pipeline(tiny_models["sd1"].file)
    assert family == "sd1"
    assert_same_weights(pipe, reference, ["unet", "vae", "text_encoder"])


class _RunsCode:
    """Unpickling this runs code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_ckpt_with_pickled_code_is_refused(tiny_models, tmp_path):
    marker = tmp_path / "code-ran"
    ckpt = tmp_path / "sketchy.ckpt"
    torch.save({"state_dict": load_file(tiny_models["sd1"].file), "callback": _RunsCode(marker)}, ckpt)
    with pytest.raises(UserError, match=r"sketchy.ckpt.*needs Python code.*\.safetensors"):
        ck.load_pipeline(ckpt)
    assert not marker.exists()


def test_missing_sources_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no model_index.json"):
        ck.load_pipeline(tmp_path)
    with pytest.raises(UserError, match="no such checkpoint"):
        ck.load_pipeline(tmp_path / "gone.safetensors")
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        ck.load_pipeline("nobody/no-such-model-here")


# ---- sources and overrides ----------------------------------------------------------------


def test_hub_repo_id_loads_from_the_local_cache(tiny_models, tmp_path, monkeypatch):
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--tiny--sd1"
    shutil.copytree(tiny_models["sd1"].folder, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    pipe, family = ck.load_pipeline("tiny/sd1")
    assert family == "sd1" and type(pipe).__name__ == "StableDiffusionPipeline"


def test_prediction_type_overrides(tiny_models, tmp_path):
    model = tmp_path / "vpred-finetune.safetensors"
    shutil.copyfile(tiny_models["sd1"].file, model)
    (tmp_path / "vpred-finetune.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    pipe, _ = ck.load_pipeline(model)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    pipe, _ = ck.load_pipeline(model, prediction_type="epsilon")
    assert pipe.scheduler.config.prediction_type == "epsilon"


# ---- tiny models ----------------------------------------------------------------------------


def test_build_tiny_model_reuses_existing_files(tiny_models):
    model = tiny_models["sd1"]
    before = (model.file.stat().st_mtime_ns, (model.folder / "unet" / "config.json").stat().st_mtime_ns)
    again = tm.build_tiny_model("sd1", model.file.parent)
    assert again == model
    assert (model.file.stat().st_mtime_ns, (model.folder / "unet" / "config.json").stat().st_mtime_ns) == before


def test_ensure_demo_model_builds_a_loadable_identical_file_once(tiny_models, tmp_path):
    path = tm.ensure_demo_model(tmp_path / "models")
    assert path == tmp_path / "models" / "Stable-diffusion" / "demo-tiny-sd15.safetensors"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files, no extra models
    # Fixed seeds: an independent build is bit-identical to the session's tiny sd1 model.
    assert path.read_bytes() == tiny_models["sd1"].file.read_bytes()
    mtime = path.stat().st_mtime_ns
    assert tm.ensure_demo_model(tmp_path / "models") == path and path.stat().st_mtime_ns == mtime
    pipe, family = ck.load_pipeline(path)
    assert family == "sd1"
    assert generate(pipe, family).shape == (64, 64, 3)


def test_tiny_models_are_small(tiny_models):
    for model in tiny_models.values():
        assert model.file.stat().st_size < 40e6
