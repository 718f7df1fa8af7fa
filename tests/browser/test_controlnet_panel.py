"""The ControlNet accordion on the img2img tab, as an artist opens it: three unit tabs, the pose
library as thumbnails, and a picked pose shown in the preview."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from widgets import fill_text, open_tab, pick, set_slider, text_value


def test_img2img_controlnet_accordion_has_units_and_pose_library(page, shot):
    open_tab(page, "img2img")
    page.locator("#img2img_controlnet > button").first.click()
    for n in range(3):
        expect(page.get_by_role("tab", name=f"Unit {n}")).to_be_visible()
    expect(page.locator("#img2img_cn0_enabled")).to_be_visible()
    thumbs = page.locator("#img2img_cn0_poses img")
    expect(thumbs.first).to_be_visible()
    assert thumbs.count() >= 10  # the shipped portrait poses
    thumbs.nth(1).click()  # a thumbnail picks its pose for the unit
    expect(page.locator("#img2img_cn0_pose input")).not_to_have_value("")
    shot("img2img-controlnet-pose", page)
    # The second unit has its own widgets.
    page.get_by_role("tab", name="Unit 1").click()
    expect(page.locator("#img2img_cn1_enabled")).to_be_visible()
    expect(page.locator("#img2img_cn0_enabled")).to_be_hidden()


def test_txt2img_with_a_library_pose_through_the_demo_controlnet(page, shot):
    """Demo mode ships a tiny ControlNet, so the whole path runs offline: pick a pose, pick the
    model, Generate, and the infotext records the unit as the A1111 extension does."""
    page.locator("#txt2img_controlnet > button").first.click()
    page.locator("#txt2img_cn0_enabled input").check()
    page.locator("#txt2img_cn0_poses img").first.click()
    expect(page.locator("#txt2img_cn0_pose input")).not_to_have_value("")
    pick(page, "txt2img_cn0_model", "demo-tiny-controlnet")
    fill_text(page, "txt2img_prompt", "portrait, three-quarter view")
    set_slider(page, "txt2img_steps", 2)
    set_slider(page, "txt2img_width", 64)
    set_slider(page, "txt2img_height", 64)
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_infotext textarea")).to_have_value(re.compile(r"ControlNet 0: "), timeout=60_000)
    info = text_value(page, "txt2img_infotext")
    assert "Model: demo-tiny-controlnet" in info and "Weight: 1" in info
    shot("generated-with-pose", page)
