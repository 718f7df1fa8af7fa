"""An artist compares seeds and CFG with the X/Y/Z plot script on txt2img and sees the grid."""

from __future__ import annotations

import re
import urllib.request
from io import BytesIO

from PIL import Image
from playwright.sync_api import expect

from widgets import fill_text, pick, set_slider


def test_xyz_plot_of_seeds_by_cfg_shows_the_grid(page, shot, app_url):
    expect(page.locator("#txt2img_generate")).to_be_visible()
    fill_text(page, "txt2img_prompt", "portrait of a lighthouse keeper")
    set_slider(page, "txt2img_steps", 2)
    set_slider(page, "txt2img_width", 64)
    set_slider(page, "txt2img_height", 64)
    page.locator("#txt2img_script_accordion").get_by_text("Script").first.click()
    page.locator("#txt2img_script input[role=combobox]").click()
    page.get_by_role("option", name="X/Y/Z plot", exact=True).click()  # a regex would trip on the slashes
    expect(page.locator("#txt2img_xyz_x_values")).to_be_visible()
    pick(page, "txt2img_xyz_x_type", "Seed")
    fill_text(page, "txt2img_xyz_x_values", "1, 2")
    pick(page, "txt2img_xyz_y_type", "CFG Scale")
    fill_text(page, "txt2img_xyz_y_values", "5, 9")
    shot("plot-settings", page)

    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_infotext textarea")).to_have_value(re.compile(r"X Type: Seed"), timeout=120_000)
    info = page.locator("#txt2img_infotext textarea").input_value()
    assert "Y Type: CFG Scale" in info and "X Values: " in info
    thumb = page.locator("#txt2img_gallery img").first
    expect(thumb).to_be_visible()
    shot("grid", page)
    assert page.locator("#txt2img_gallery img").count() == 1  # the grid only (no sub images asked for)
    src = thumb.get_attribute("src")
    with urllib.request.urlopen(src if src.startswith("http") else app_url + src) as r:
        grid = Image.open(BytesIO(r.read()))
        assert grid.width > 128 and grid.height > 128  # 2x2 cells of 64 px, plus the labels
