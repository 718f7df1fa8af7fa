"""The first thing an artist does: prompt, a few settings, Generate, download the picture."""

from __future__ import annotations

import re

from PIL import Image
from playwright.sync_api import expect

from widgets import fill_text, set_number, set_slider, slider_value, text_value


def test_txt2img_generate_download_and_switch_tabs(page, shot, tmp_path):
    expect(page.locator("#txt2img_generate")).to_be_visible()
    shot("loaded", page)

    fill_text(page, "txt2img_prompt", "portrait of an old fisherman, oil painting")
    set_slider(page, "txt2img_steps", 3)
    set_slider(page, "txt2img_cfg_scale", 5.5)
    set_slider(page, "txt2img_width", 64)
    set_slider(page, "txt2img_height", 64)
    set_number(page, "txt2img_seed", 4242)
    assert slider_value(page, "txt2img_steps") == 3
    shot("settings", page)

    page.locator("#txt2img_generate").click()
    thumb = page.locator("#txt2img_gallery img").first
    expect(thumb).to_be_visible()
    expect(page.locator("#txt2img_infotext textarea")).to_have_value(
        re.compile(r"Seed: 4242"))
    shot("generated", page)
    info = text_value(page, "txt2img_infotext")
    assert info.startswith("portrait of an old fisherman, oil painting")

    # Open the image and use the gallery's own Download button, as a person would.
    thumb.click()
    with page.expect_download() as dl:
        page.locator("#txt2img_gallery button[aria-label='Download']").click()
    path = tmp_path / (dl.value.suggested_filename or "download.png")
    dl.value.save_as(path)
    shot("downloaded", page)
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (64, 64)
        params = im.text.get("parameters")  # the A1111 tEXt/iTXt chunk
    assert params is not None, "downloaded PNG has no parameters chunk"
    assert "Seed: 4242" in params and "Steps: 3," in params
    assert "CFG scale: 5.5" in params

    # Every registered tab opens, and txt2img comes back with the prompt still there.
    tabs = page.get_by_role("tab")
    names = [tabs.nth(i).inner_text().strip() for i in range(tabs.count())]
    assert "txt2img" in names
    for name in names:
        page.get_by_role("tab", name=name, exact=True).click()
        expect(page.get_by_role("tab", name=name, exact=True)).to_have_attribute("aria-selected", "true")
        shot(f"tab-{name}", page)
    page.get_by_role("tab", name="txt2img", exact=True).click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("portrait of an old fisherman, oil painting")
