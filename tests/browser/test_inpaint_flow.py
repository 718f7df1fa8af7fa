"""Inpainting as an artist does it: upload a picture, paint a mask with the mouse, undo a stroke,
Generate, and get back the same picture with only the painted part repainted. And "Send to"
from the txt2img gallery."""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image
from playwright.sync_api import expect

from widgets import fill_text, open_tab, set_number, set_slider, text_value, upload_to_editor

WAIT = 60_000  # a server round trip on a busy 2-core CI machine can take many seconds


def card(size=256) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size]
    return Image.fromarray(np.stack([x, y, (x + y) % 256], -1).astype(np.uint8), "RGB")


def stroke(page, points) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*p, steps=8)
    page.mouse.up()


def fetch(page, src: str) -> Image.Image:
    return Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB")


def test_paint_mask_undo_and_inpaint(page, shot, tmp_path):
    picture = card()
    picture.save(tmp_path / "portrait.png")
    open_tab(page, "Inpaint")
    editor = page.locator("#inpaint_editor")
    upload_to_editor(page, "inpaint_editor", tmp_path / "portrait.png")
    # The upload sets the working size from the picture.
    expect(page.locator("#inpaint_width input[type=number]")).to_have_value("256", timeout=WAIT)
    for tool in ("Zoom in", "Zoom out", "Undo", "Redo", "Brush", "Erase"):
        expect(editor.get_by_role("button", name=tool, exact=True)).to_be_visible(timeout=WAIT)
    shot("uploaded", page)

    editor.get_by_role("button", name="Brush", exact=True).click()
    box = editor.locator("canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    stroke(page, [(cx - 60, cy), (cx + 60, cy)])  # across the middle of the picture
    quarter = box["width"] * 0.3
    stroke(page, [(cx - quarter, cy - quarter), (cx - quarter + 30, cy - quarter)])  # a slip of the hand...
    shot("two-strokes", page)
    editor.get_by_role("button", name="Undo", exact=True).click()  # ...taken back
    shot("undone", page)

    fill_text(page, "inpaint_prompt", "portrait, calm expression")
    set_slider(page, "inpaint_steps", 2)
    set_slider(page, "inpaint_width", 64)
    set_slider(page, "inpaint_height", 64)
    set_slider(page, "inpaint_denoising", 1)
    set_number(page, "inpaint_seed", 99)
    page.locator("#inpaint_generate").click()
    thumb = page.locator("#inpaint_gallery img").first
    expect(thumb).to_be_visible(timeout=WAIT)
    expect(page.locator("#inpaint_infotext textarea")).to_have_value(re.compile(r"Mask blur: 4"), timeout=WAIT)
    shot("inpainted", page)

    out = np.asarray(fetch(page, thumb.get_attribute("src")), dtype=np.int16)
    src = np.asarray(picture, dtype=np.int16)
    assert out.shape == src.shape  # the result keeps the picture's size
    diff = np.abs(out - src).max(axis=2)
    assert diff[128, 118:138].mean() > 10, "the painted stroke was not repainted"
    for y, x in ((10, 10), (245, 245), (10, 245), (245, 10)):  # far from the stroke: exact
        assert diff[y - 8:y + 8, x - 8:x + 8].max() == 0
    # Where the undone stroke was, nothing changed.
    ux = uy = round(128 - 0.3 * 256)
    assert diff[uy - 6:uy + 6, ux + 6:ux + 20].max() == 0, "an undone stroke still masked the picture"


def test_send_from_txt2img_to_inpaint_and_img2img(page, shot):
    fill_text(page, "txt2img_prompt", "head shot of a violinist")
    set_slider(page, "txt2img_steps", 2)
    set_slider(page, "txt2img_width", 64)
    set_slider(page, "txt2img_height", 64)
    set_number(page, "txt2img_seed", 5)
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_gallery img").first).to_be_visible(timeout=WAIT)
    expect(page.locator("#txt2img_infotext textarea")).to_have_value(re.compile(r"Seed: 5"), timeout=WAIT)

    page.locator("#txt2img_send_to_inpaint").click()
    expect(page.get_by_role("tab", name="Inpaint", exact=True)).to_have_attribute("aria-selected", "true",
                                                                               timeout=WAIT)
    expect(page.locator("#inpaint_prompt textarea")).to_have_value("head shot of a violinist", timeout=WAIT)
    expect(page.locator("#inpaint_steps input[type=number]")).to_have_value("2", timeout=WAIT)
    expect(page.locator("#inpaint_editor canvas").first).to_be_visible(timeout=WAIT)
    shot("sent-to-inpaint", page)

    open_tab(page, "txt2img")
    page.locator("#txt2img_send_to_img2img").click()
    expect(page.get_by_role("tab", name="img2img", exact=True)).to_have_attribute("aria-selected", "true",
                                                                               timeout=WAIT)
    expect(page.locator("#img2img_image img")).to_be_visible(timeout=WAIT)
    assert text_value(page, "img2img_prompt") == "head shot of a violinist"
    shot("sent-to-img2img", page)


def test_one_click_face_mask_then_inpaint(page, shot, tmp_path):
    """The "Face" button finds the face in the picture and puts its mask on the canvas as a brush
    layer; Generate then repaints the face and leaves the rest of the picture exact."""
    from skimage import data as skdata

    photo = Image.fromarray(skdata.astronaut()).resize((256, 256), Image.LANCZOS)
    photo.save(tmp_path / "astronaut.png")
    open_tab(page, "Inpaint")
    upload_to_editor(page, "inpaint_editor", tmp_path / "astronaut.png")
    expect(page.locator("#inpaint_width input[type=number]")).to_have_value("256", timeout=WAIT)
    page.locator("#inpaint_mask_face").click()
    expect(page.locator("#inpaint_auto_mask_note")).to_contain_text(re.compile(r"face: \d+\.\d% of the picture"),
                                                                   timeout=WAIT)
    shot("face-mask", page)

    fill_text(page, "inpaint_prompt", "portrait, smiling")
    set_slider(page, "inpaint_steps", 2)
    set_slider(page, "inpaint_width", 64)
    set_slider(page, "inpaint_height", 64)
    set_slider(page, "inpaint_denoising", 1)
    set_number(page, "inpaint_seed", 7)
    page.locator("#inpaint_generate").click()
    thumb = page.locator("#inpaint_gallery img").first
    expect(thumb).to_be_visible(timeout=WAIT)
    expect(page.locator("#inpaint_infotext textarea")).to_have_value(re.compile(r"Mask blur"), timeout=WAIT)
    shot("face-inpainted", page)

    out = np.asarray(fetch(page, thumb.get_attribute("src")), dtype=np.int16)
    diff = np.abs(out - np.asarray(photo, dtype=np.int16)).max(axis=2)
    assert diff[52:68, 105:121].mean() > 10, "the face was not repainted"  # the astronaut's face centre
    for y, x in ((10, 10), (245, 245), (10, 245), (245, 10)):  # corners: outside the face mask, exact
        assert diff[y - 8:y + 8, x - 8:x + 8].max() == 0
