import json
from pathlib import Path

import pytest

from webui.errors import UserError
from webui.prompts.preset_files import load_presets
from webui.prompts.presets import (
    FAMILIES,
    KNOWN_SAMPLERS,
    KNOWN_SCHEDULERS,
    PRESETS_DIR,
    apply_preset,
    find_preset,
    normalize_family,
)
from webui.prompts.styles import BUILTIN_STYLES, apply_styles

REQUIRED_LOOKS = {
    "Photoreal Headshot", "Studio Portrait", "Cinematic Portrait", "Fashion Editorial",
    "Anime Character", "Character Concept Sheet", "Classical Oil Portrait", "Watercolor Portrait",
    "Pencil Sketch", "Gongbi Figure Painting", "Ink Wash Portrait", "3D Character Render",
}

A1111_FIELDS = {"styles", "negative_prompt", "sampler_name", "scheduler", "steps", "cfg_scale",
                "width", "height", "enable_hr"}
HR_FIELDS = {"hr_scale", "hr_upscaler", "hr_second_pass_steps", "denoising_strength"}


@pytest.fixture(scope="module")
def shipped():
    presets, problems = load_presets()
    return presets, problems


def test_every_shipped_preset_loads(shipped):
    presets, problems = shipped
    assert problems == []
    files = sorted(PRESETS_DIR.glob("*.json"))
    assert len(presets) == len(files) >= 12
    assert REQUIRED_LOOKS <= set(presets)


@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_request_fields(shipped, family):
    presets, _ = shipped
    builtin = {s.name for s in BUILTIN_STYLES}
    for p in presets.values():
        f = p.to_request_fields(family)
        assert A1111_FIELDS <= set(f), p.name
        assert f["width"] % 8 == 0 and f["height"] % 8 == 0, p.name
        assert p.sizes[family] == (f["width"], f["height"])  # every shipped preset gives all 3
        assert f["sampler_name"] in KNOWN_SAMPLERS and f["scheduler"] in KNOWN_SCHEDULERS
        assert 1 <= f["steps"] <= 150 and 1 <= f["cfg_scale"] <= 30
        assert set(f["styles"]) <= builtin
        if f["enable_hr"]:
            assert HR_FIELDS <= set(f)
            assert 0 < f["denoising_strength"] <= 1
            assert f["hr_upscaler"] in {"Latent", "Lanczos", "Nearest"}  # need no model file
            if f["hr_upscaler"].startswith("Latent"):
                assert f["denoising_strength"] >= 0.5, p.name
        else:
            assert not HR_FIELDS & set(f)


def test_shipped_presets_have_chinese_text_and_templates(shipped):
    presets, _ = shipped
    for p in presets.values():
        assert p.name_zh and p.description and p.description_zh
        assert "{prompt}" in p.prompt
        assert apply_preset("1girl", p).count("1girl") == 1
        assert p.negative_prompt
        # Applying the preset and its styles gives one clean prompt.
        prompt, negative = apply_styles(apply_preset("a woman", p), p.negative_prompt, p.styles)
        assert "{prompt}" not in prompt and ", ," not in prompt and ", ," not in negative


def test_preset_prompt_and_negative(shipped):
    presets, _ = shipped
    p = presets["Studio Portrait"]
    f = p.to_request_fields("sdxl", prompt="an old fisherman", negative_prompt="hat")
    assert f["prompt"].startswith("studio portrait of an old fisherman,")
    assert f["negative_prompt"].startswith("hat, ")
    assert (f["width"], f["height"]) == (832, 1216)
    assert f["enable_hr"] is False  # hires only for sd1 in this preset
    f1 = p.to_request_fields("SD 1.5")
    assert f1["enable_hr"] is True and f1["width"] == 512
    empty = apply_preset("", p)
    assert "{prompt}" not in empty and " ," not in empty and not empty.startswith(",")


def test_family_aliases_and_unknown():
    assert normalize_family("SDXL") == "sdxl"
    assert normalize_family("sd15") == "sd1"
    assert normalize_family("sdxl-inpaint") == "sdxl"
    with pytest.raises(UserError):
        normalize_family("flux")


def test_find_preset(shipped):
    presets, _ = shipped
    assert find_preset(presets, "工笔人物").name == "Gongbi Figure Painting"
    assert find_preset(presets, "gongbi_figure").name == "Gongbi Figure Painting"
    with pytest.raises(UserError):
        find_preset(presets, "nope")


def test_menu_order(shipped):
    presets, _ = shipped
    assert list(presets)[0] == "Photoreal Headshot"


GOOD = {
    "name": "Test", "name_zh": "测试", "sampler_name": "Euler a", "scheduler": "Automatic",
    "steps": 20, "cfg_scale": 7, "size": {"sd1": [512, 512]},
}


def _write(folder: Path, name: str, data) -> None:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    (folder / name).write_text(text, encoding="utf-8")


def test_bad_files_are_reported_and_skipped(tmp_path):
    _write(tmp_path, "good.json", GOOD)
    _write(tmp_path, "unknown_key.json", {**GOOD, "name": "U", "colour": "red"})
    _write(tmp_path, "wrong_type.json", {**GOOD, "name": "W", "steps": "twenty"})
    _write(tmp_path, "not8.json", {**GOOD, "name": "N", "size": {"sdxl": [1000, 1217]}})
    _write(tmp_path, "broken.json", '{"name": "B", "steps": 20,')
    _write(tmp_path, "range.json", {**GOOD, "name": "R", "steps": 500, "cfg_scale": 0})
    _write(tmp_path, "sampler.json", {**GOOD, "name": "S", "sampler_name": "DPM++ 9M"})
    _write(tmp_path, "no_placeholder.json", {**GOOD, "name": "P", "prompt": "just text"})
    _write(tmp_path, "bad_hires.json", {**GOOD, "name": "H", "hires": {"scale": 1.5}})
    _write(tmp_path, "zz_dup.json", {**GOOD})
    _write(tmp_path, "list.json", [1, 2])
    _write(tmp_path, "family.json", {**GOOD, "name": "F", "size": {"sd3": [512, 512]}})
    (tmp_path / "README.md").write_text("not a preset")

    presets, problems = load_presets(tmp_path)
    assert list(presets) == ["Test"]
    by_file = {p.split(":", 1)[0]: p for p in problems}
    assert set(by_file) == {
        "unknown_key.json", "wrong_type.json", "not8.json", "broken.json", "range.json",
        "sampler.json", "no_placeholder.json", "bad_hires.json", "zz_dup.json", "list.json",
        "family.json",
    }
    assert "colour" in by_file["unknown_key.json"] and "unknown key" in by_file["unknown_key.json"]
    assert "steps" in by_file["wrong_type.json"] and "whole number" in by_file["wrong_type.json"]
    assert "1217" in by_file["not8.json"] and "multiple of 8" in by_file["not8.json"]
    assert "1000" not in by_file["not8.json"]
    assert "not valid JSON" in by_file["broken.json"]
    assert "500" in by_file["range.json"] and "cfg_scale" in by_file["range.json"]
    assert "DPM++ 9M" in by_file["sampler.json"]
    assert "{prompt}" in by_file["no_placeholder.json"]
    assert "hires.upscaler" in by_file["bad_hires.json"]
    assert "already loaded" in by_file["zz_dup.json"]
    assert "sd3" in by_file["family.json"]


def test_unknown_style_is_dropped_but_preset_kept(tmp_path):
    _write(tmp_path, "a.json", {**GOOD, "styles": ["Gongbi", "No Such Style"]})
    presets, problems = load_presets(tmp_path)
    assert presets["Test"].styles == ("Gongbi",)
    assert len(problems) == 1 and "No Such Style" in problems[0] and problems[0].startswith("a.json")
    presets, problems = load_presets(tmp_path, known_styles=["Gongbi", "No Such Style"])
    assert presets["Test"].styles == ("Gongbi", "No Such Style") and problems == []


def test_missing_family_size_is_derived(tmp_path):
    _write(tmp_path, "a.json", {**GOOD, "size": {"sdxl": [832, 1216]}})
    presets, problems = load_presets(tmp_path)
    p = presets["Test"]
    for fam in FAMILIES:
        w, h = p.size_for(fam)
        assert w % 8 == 0 and h % 8 == 0 and h > w
    assert p.size_for("sdxl") == (832, 1216)


def test_missing_folder_never_raises(tmp_path):
    presets, problems = load_presets(tmp_path / "nope")
    assert presets == {} and problems and "not found" in problems[0]


def test_unreadable_utf8(tmp_path):
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    presets, problems = load_presets(tmp_path)
    assert presets == {} and problems[0].startswith("bin.json")
