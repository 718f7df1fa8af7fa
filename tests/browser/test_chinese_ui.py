"""The Chinese interface and a Chinese prompt, as a Chinese-speaking artist meets them: labels in
Chinese, the English the model will read shown and editable, a preset filling the controls."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from widgets import fill_text, pick, set_slider, slider_value, text_value


def test_chinese_browser_gets_chinese_labels(new_page, shot):
    page = new_page(locale="zh-CN")
    expect(page.locator("#txt2img_generate")).to_have_text("生成")
    expect(page.get_by_role("tab", name="文生图")).to_be_visible()
    expect(page.locator("#txt2img_prompt [data-testid=block-info]")).to_have_text("提示词")
    expect(page.locator("#txt2img_neg_prompt [data-testid=block-info]")).to_have_text("反向提示词")
    expect(page.locator("#txt2img_steps [data-testid=block-info]")).to_have_text("采样步数")
    expect(page.locator("#txt2img_preset [data-testid=block-info]")).to_have_text("预设")
    # Panels added after the first translation pass are in Chinese too.
    expect(page.locator("#txt2img_hires > button").first).to_contain_text("高清修复")
    expect(page.locator("#txt2img_hires > button").first).not_to_contain_text("Hires")
    shot("zh-CN", page)


def test_language_button_switches_to_chinese(new_page, shot):
    page = new_page(locale="en-US")
    expect(page.locator("#txt2img_generate")).to_have_text("Generate")
    page.locator("#language_button").click()
    page.get_by_role("combobox", name="Language").click()
    page.get_by_role("option", name="简体中文").click()
    expect(page.locator("#txt2img_generate")).to_have_text("生成")
    shot("switched-to-chinese", page)


def test_chinese_prompt_preset_and_edited_translation(new_page, shot):
    page = new_page(locale="zh-CN")
    fill_text(page, "txt2img_prompt", "一个穿着汉服的女孩, (红色头发:1.3)")
    translated = page.locator("#txt2img_translated_prompt textarea")
    expect(translated).to_be_visible()
    expect(translated).to_have_value(re.compile(r"hanfu.*\(red hair:1\.3\)"))
    shot("translation-shown", page)

    pick(page, "txt2img_preset", "影棚人像")
    expect(page.locator("#txt2img_steps input[type=number]")).to_have_value("28")
    assert slider_value(page, "txt2img_cfg_scale") == 6
    assert (slider_value(page, "txt2img_width"), slider_value(page, "txt2img_height")) == (512, 768)
    assert text_value(page, "txt2img_neg_prompt").startswith("outdoor, busy background")
    expect(page.locator("#txt2img_styles")).to_contain_text("Studio Lighting")
    shot("preset-picked", page)

    # Hires fix and face detail settings come from the preset too (it turns both on for SD 1.5);
    # the artist turns them off here to keep the test fast.
    for accordion, box in (("txt2img_hires", "txt2img_enable_hr"),
                           ("txt2img_face_detail_accordion", "txt2img_face_detail")):
        page.locator(f"#{accordion} > button").first.click()
        checkbox = page.locator(f"#{box} input[type=checkbox]")
        expect(checkbox).to_be_checked()
        checkbox.uncheck()
    # The artist keeps the preset but changes what they like, and words the English themselves.
    set_slider(page, "txt2img_steps", 2)
    set_slider(page, "txt2img_width", 64)
    set_slider(page, "txt2img_height", 64)
    translated.fill("a girl in hanfu, (copper red hair:1.3)")
    page.locator("#txt2img_generate").click()
    info = page.locator("#txt2img_infotext textarea")
    expect(info).to_have_value(re.compile(r"Preset: Studio Portrait"))
    text = info.input_value()
    shot("generated", page)
    assert text.startswith("studio portrait of a girl in hanfu, (copper red hair:1.3)")
    assert "Original prompt: \"一个穿着汉服的女孩, (红色头发:1.3)\"" in text
    assert "Steps: 2," in text and "Size: 64x64" in text and "Sampler: DPM++ 2M" in text
    assert 'Styles array: "[\\"Studio Lighting\\", \\"Portrait Essentials\\"]"' in text


def test_words_left_in_chinese_are_highlighted_until_edited(new_page, shot):
    page = new_page(locale="zh-CN")
    fill_text(page, "txt2img_prompt", "一个女孩, 𠀾云")  # 𠀾: a character no dictionary here knows
    fill_text(page, "txt2img_neg_prompt", "模糊, 𠁁纹")
    marks = page.locator("#txt2img_translated_prompt_marks")
    neg_marks = page.locator("#txt2img_translated_neg_prompt_marks")
    expect(marks).to_be_visible()
    expect(marks).to_contain_text(re.compile(r"1girl,\s*𠀾\s*中文\s*clouds"))  # highlighted, labelled
    expect(neg_marks).to_contain_text(re.compile(r"blurry,\s*𠁁\s*中文"))
    shot("untranslated-highlighted", page)
    # The artist words it in English: what the model reads follows, nothing is left highlighted.
    page.locator("#txt2img_translated_prompt textarea").fill("1girl, a qilin walking on clouds")
    expect(marks).to_contain_text("a qilin walking on clouds")
    expect(marks).not_to_contain_text("𠀾")
    expect(neg_marks).to_contain_text("𠁁")
