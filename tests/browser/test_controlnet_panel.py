"""The ControlNet accordion on the img2img tab, as an artist opens it: three unit tabs, the pose
library as thumbnails, and a picked pose shown in the preview."""

from __future__ import annotations

from playwright.sync_api import expect

from widgets import open_tab


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
