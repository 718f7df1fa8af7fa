"""Presets, styles and Chinese prompts through the Service, on the tiny demo model: what the
model reads, what the saved PNG's infotext says, and bad input that must not break start-up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from webui.errors import UserError
from webui.metadata.image_meta import read_infotext
from webui.metadata.infotext import infotext_to_fields, parse_infotext
from webui.prompts.preset_files import load_presets
from webui.serving.service import Service
from webui.settings import Settings
from webui.ui.presets_panel import preset_updates, translation_fields

FAST = dict(steps=2, width=64, height=64, seed=7, sampler_name="Euler", scheduler="Automatic")


@pytest.fixture(scope="module")
def models_dir(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("portrait-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "demo.safetensors")
    return root


@pytest.fixture(scope="module")
def service(models_dir, tmp_path_factory) -> Service:
    out = tmp_path_factory.mktemp("portrait-outputs")
    return Service.create(Settings(models_dir=models_dir, outputs_dir=out, device="cpu", translator="glossary"))


def saved_params(result) -> dict:
    text, _ = read_infotext(result.paths[0])
    return parse_infotext(text)


def test_every_shipped_preset_generates_and_is_recorded(service):
    shipped, problems = load_presets(known_styles=service.styles.names())
    assert problems == [] and len(shipped) >= 12
    assert service.startup_problems == []
    for name, preset in shipped.items():
        # The preset's own sampler and schedule run; size and steps sent by the caller win.
        req, notes = service.prepare(dict(prompt="portrait of an old fisherman", preset=name, steps=2, width=64,
                                          height=64, seed=7))
        assert notes == []
        assert "portrait of an old fisherman" in req.prompt and req.prompt != "portrait of an old fisherman", name
        assert (req.width, req.height, req.steps) == (64, 64, 2)
        assert (req.sampler_name, req.scheduler) == (preset.sampler_name, preset.scheduler)
        result = service.generate(req)
        params = saved_params(result)
        assert params["Prompt"] == req.prompt, name
        assert params["Preset"] == name
        if preset.styles:
            assert json.loads(params["Styles array"]) == list(preset.styles)


def test_preset_fills_fields_the_caller_left_out(service):
    """An API caller may send only a prompt and a preset name; the preset supplies the rest,
    with the size for the active model's family (the demo model is SD 1.5)."""
    req, _ = service.prepare(dict(prompt="a violinist", preset="影棚人像"))
    preset = service.presets["Studio Portrait"]
    assert (req.width, req.height) == preset.size_for("sd1") == (512, 768)
    assert (req.steps, req.cfg_scale, req.sampler_name, req.scheduler) == (28, 6.0, "DPM++ 2M", "Karras")
    assert req.negative_prompt.startswith(preset.negative_prompt.split(",")[0])
    assert req.styles == preset.styles


def test_preset_updates_map_to_the_tabs_controls(service):
    # Controls are keyed by A1111 field name; strings stand in for the components here.
    controls = {k: f"<{k}>" for k in ("sampler_name", "scheduler", "steps", "cfg_scale", "width", "height",
                                       "negative_prompt", "styles")}
    updates = preset_updates(service, "Anime Character", controls)
    preset = service.presets["Anime Character"]
    assert updates["<steps>"] == preset.steps and updates["<cfg_scale>"] == preset.cfg_scale
    assert (updates["<width>"], updates["<height>"]) == preset.size_for("sd1")
    assert updates["<styles>"] == list(preset.styles)
    assert updates["<negative_prompt>"] == preset.negative_prompt
    assert preset_updates(service, "None", controls) == {}


def test_styles_apply_in_the_chosen_order_and_reach_the_infotext(service):
    names = ["Studio Lighting", "Golden Hour"]
    a, _ = service.prepare(dict(prompt="a dancer", styles=names, **FAST))
    b, _ = service.prepare(dict(prompt="a dancer", styles=names[::-1], **FAST))
    assert a.prompt != b.prompt
    assert a.prompt.startswith("a dancer")
    params = saved_params(service.generate(a))
    assert params["Prompt"] == a.prompt
    assert json.loads(params["Styles array"]) == names
    assert infotext_to_fields(params)["styles"] == names
    # Each style's own text appears, the first one's before the second one's.
    assert a.prompt.index("professional studio lighting") < a.prompt.index("golden hour backlight")
    assert b.prompt.index("golden hour backlight") < b.prompt.index("professional studio lighting")


def test_infotext_sent_back_gives_the_same_prompt_not_doubled_styles(service):
    """PNG Info / API replays send the expanded prompt with its Preset and Styles array."""
    first, _ = service.prepare(dict(prompt="红色头发的女孩", preset="Classical Oil Portrait",
                                    styles=["Golden Hour", "Portrait Essentials"], **FAST))
    result = service.generate(first)
    fields = infotext_to_fields(saved_params(result))
    assert fields["styles"] == ["Golden Hour", "Portrait Essentials"] and fields["preset"] == "Classical Oil Portrait"
    again, _ = service.prepare({**fields, "sd_model_checkpoint": None})
    assert (again.prompt, again.negative_prompt) == (first.prompt, first.negative_prompt)
    assert again.prompt.count("golden hour backlight") == 1


def test_unknown_style_or_preset_is_a_clear_user_error(service):
    with pytest.raises(UserError, match="Unknown style 'Nope'"):
        service.prepare(dict(prompt="x", styles=["Nope"], **FAST))
    with pytest.raises(UserError, match="Unknown preset"):
        service.prepare(dict(prompt="x", preset="Nope", **FAST))


def test_chinese_prompt_is_translated_and_the_original_kept(service):
    prompt = "一个穿着汉服的女孩, (红色头发:1.3), <lora:古风:0.6>, smiling BREAK 柔光"
    req, notes = service.prepare(dict(prompt=prompt, negative_prompt="模糊, lowres", **FAST))
    assert "(red hair:1.3)" in req.prompt and "<lora:古风:0.6>" in req.prompt
    assert "BREAK" in req.prompt and "smiling" in req.prompt and "hanfu" in req.prompt
    assert req.negative_prompt.endswith("lowres") and "blurry" in req.negative_prompt
    params = saved_params(service.generate(req))
    assert params["Prompt"] == req.prompt
    assert params["Original prompt"] == prompt
    assert params["Original negative prompt"] == "模糊, lowres"


def test_artists_edited_english_wins_only_for_its_own_prompt(service):
    prompt = "红色头发的女孩"
    req, _ = service.prepare(dict(prompt=prompt, translated_prompt="a girl with copper hair",
                                  translated_from=prompt, **FAST))
    assert req.prompt == "a girl with copper hair"
    stale, _ = service.prepare(dict(prompt="蓝色眼睛的女孩", translated_prompt="a girl with copper hair",
                                    translated_from=prompt, **FAST))
    assert "copper" not in stale.prompt and "blue eyes" in stale.prompt
    # The UI only passes the English on when the preview was made for the current prompt.
    made_for = {"prompt": prompt, "negative": ""}
    assert translation_fields(prompt, "", "copper", "", made_for) == {"translated_prompt": "copper"}
    assert translation_fields("蓝眼睛", "", "copper", "", made_for) == {}
    assert translation_fields("english only", "", "copper", "", {"prompt": "english only"}) == {}


class _Silent:
    def translate(self, text: str) -> str:
        return ""


def test_empty_translation_keeps_the_text_with_a_note(models_dir, tmp_path):
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path, device="cpu", translator="off"),
                         load_model=False)
    svc.translator = _Silent()
    req, notes = svc.prepare(dict(prompt="女孩, (smile:1.2)", **FAST))
    assert req.prompt.startswith("女孩") and "(smile:1.2)" in req.prompt
    assert any("could not be translated" in n for n in notes)
    assert any("untranslated" in n for n in notes)


def test_translation_off_passes_text_through(models_dir, tmp_path):
    svc = Service.create(Settings(models_dir=models_dir, outputs_dir=tmp_path, device="cpu", translator="off"),
                         load_model=False)
    assert svc.translator is None
    req, _ = svc.prepare(dict(prompt="女孩", **FAST))
    assert req.prompt == "女孩"


def test_bad_start_up_files_are_reported_not_fatal(tiny_models, tmp_path, monkeypatch):
    models = tmp_path / "models"
    (models / "presets").mkdir(parents=True)
    (models / "presets" / "broken.json").write_text('{"name": "Broken", "steps": "many"', encoding="utf-8")
    (models / "presets" / "odd_size.json").write_text(json.dumps({
        "name": "Odd", "name_zh": "奇数", "sampler_name": "Euler", "scheduler": "Karras", "steps": 20,
        "cfg_scale": 7, "size": {"sd1": [510, 768]}, "colour": "red"}), encoding="utf-8")
    (models / "presets" / "mine.json").write_text(json.dumps({
        "name": "Mine", "name_zh": "我的", "sampler_name": "Euler", "scheduler": "Karras", "steps": 12,
        "cfg_scale": 5, "size": {"sd1": [512, 640]}, "styles": ["Studio Lighting", "No Such Style"]}),
        encoding="utf-8")
    (models / "styles.csv").write_text(
        'name,prompt,negative_prompt\n'
        'Good One,"{prompt}, warm light",cold\n'
        'Broken,"{prompt}, unclosed quote,\n',
        encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    svc = Service.create(Settings(models_dir=models, outputs_dir=tmp_path / "o", device="cpu", translator="marian"),
                         load_model=False)
    text = "\n".join(svc.startup_problems)
    assert "broken.json" in text and "not valid JSON" in text
    assert "odd_size.json" in text and "multiple of 8" in text and "colour" in text
    assert "No Such Style" in text
    assert "styles.csv" in text
    assert "translator" in text and "glossary" in text
    assert svc.translator is not None  # fell back to the glossary
    assert "Mine" in svc.presets and svc.presets["Mine"].styles == ("Studio Lighting",)
    assert "Good One" in svc.styles
    # Styles the caller sends replace the preset's; the preset still fills what was left out.
    req, _ = svc.prepare(dict(prompt="a baker", styles=["Good One"], preset="Mine", seed=1))
    assert req.prompt == "a baker, warm light" and req.negative_prompt == "cold"
    assert (req.steps, req.width, req.height) == (12, 512, 640)
    # The artist sees the same list at the top of the page.
    import gradio as gr

    from webui.ui import build_ui

    demo = build_ui(svc)
    shown = "\n".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    assert "broken.json" in shown and "styles.csv" in shown


def test_edited_english_is_encoded_and_recorded_beside_the_chinese(service):
    """Both boxes: the artist's English is what the model reads and what the infotext says; the
    Chinese as typed is kept beside it."""
    prompt, negative = "红色头发的女孩, (微笑:1.2)", "模糊, lowres"
    req, _ = service.prepare(dict(prompt=prompt, negative_prompt=negative, translated_prompt="a girl, copper hair",
                                  translated_negative_prompt="blurry, lowres, text",
                                  translated_from=prompt, **FAST))
    assert (req.prompt, req.negative_prompt) == ("a girl, copper hair", "blurry, lowres, text")
    params = saved_params(service.generate(req))
    assert params["Prompt"] == "a girl, copper hair"
    assert params["Negative prompt"] == "blurry, lowres, text"
    assert params["Original prompt"] == prompt
    assert params["Original negative prompt"] == negative


def test_chinese_in_a_style_or_preset_template_is_translated(service):
    """prompting.py step 4: a style or preset written in Chinese reaches the model in English, also
    around the artist's own edited English; the infotext's Original prompt is only the artist's."""
    from dataclasses import replace

    from webui.prompts.glossary import GlossaryTranslator
    from webui.prompts.prompting import expand_prompts
    from webui.prompts.styles import Style, StyleLibrary

    library = StyleLibrary([Style("Ink", prompt="{prompt}, 水墨", negative_prompt="模糊")])
    preset = replace(next(iter(service.presets.values())), prompt="工笔, {prompt}")
    glossary = GlossaryTranslator()
    out = expand_prompts("1girl, smile", "lowres", styles=["Ink"], library=library, preset=preset,
                         translator=glossary)
    assert out.prompt == "gongbi, 1girl, smile, ink wash" and out.negative_prompt == "lowres, blurry"
    assert "Original prompt" not in dict(out.infotext_params)
    edited = expand_prompts("红色头发", "", styles=["Ink"], library=library, preset=preset, translator=glossary,
                            translated_prompt="copper hair")
    assert edited.prompt == "gongbi, copper hair, ink wash"
    assert dict(edited.infotext_params)["Original prompt"] == "红色头发"
