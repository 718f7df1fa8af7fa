"""Characters on txt2img as an artist makes one: open the editor, name it, upload a reference
photo, save, pick it, generate, read "Character: <name>" in the infotext, and send it to img2img. Runs its own
in-process app whose models folder has a LoRA and a tiny IP-Adapter."""

from __future__ import annotations

import re
import shutil
import socket

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from widgets import fill_text, pick, set_number, set_slider

WAIT = 60_000


@pytest.fixture()
def character_app(tiny_models, tiny_loras, tmp_path):
    from test_controlnet import build_tiny_ip_adapter
    from webui.serving.service import Service
    from webui.settings import Settings
    from webui.ui import build_ui, launch_kwargs

    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_models["sd1"].file, models / "Stable-diffusion" / "tiny.safetensors")
    (models / "Lora").mkdir()
    shutil.copy(tiny_loras["face"][0], models / "Lora" / "face.safetensors")
    (models / "ipadapter").mkdir()
    build_tiny_ip_adapter("sd1", models / "ipadapter")
    svc = Service.create(Settings(models_dir=models, outputs_dir=tmp_path / "out", device="cpu",
                                  characters_dir=tmp_path / "characters"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_ui(svc)
    kwargs = launch_kwargs(svc)
    kwargs.update(server_port=port, share=False, auth=None)
    _, url, _ = demo.queue().launch(prevent_thread_lock=True, quiet=True, **kwargs)
    yield url, svc
    demo.close()
    svc.close()


def test_create_pick_and_generate_with_a_character(browser, character_app, tmp_path):
    url, svc = character_app
    ref = Image.new("RGB", (48, 48), (200, 150, 120))
    ImageDraw.Draw(ref).ellipse((10, 6, 38, 42), fill=(90, 60, 40))
    ref.save(tmp_path / "mira.png")
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.set_default_timeout(WAIT)
        page.goto(url)
        page.get_by_text("Create / edit character").click()
        fill_text(page, "txt2img_character_name", "Mira")
        fill_text(page, "txt2img_character_trigger", "mira woman")
        pick(page, "txt2img_character_lora", "face")
        page.locator("#txt2img_character_add_lora").click()
        expect(page.locator("#txt2img_character_loras textarea")).to_have_value("face:0.8")
        page.locator("#txt2img_character_images input[type=file]").set_input_files(str(tmp_path / "mira.png"))
        # The file list shows the name with the extension in its own span ("mira .png" as text).
        expect(page.locator("#txt2img_character_images")).to_contain_text(re.compile(r"mira\s*\.png"))
        page.locator("#txt2img_character_save").click()
        # Saving picks the new character.
        expect(page.locator("#txt2img_characters")).to_contain_text("Mira")
        assert (svc.settings.characters_dir / "Mira" / "ref1.png").is_file()

        fill_text(page, "txt2img_prompt", "portrait")
        set_slider(page, "txt2img_steps", 1)
        set_slider(page, "txt2img_width", 64)
        set_slider(page, "txt2img_height", 64)
        set_number(page, "txt2img_seed", 7)
        page.locator("#txt2img_generate").click()
        info = page.locator("#txt2img_infotext textarea")
        expect(info).to_have_value(re.compile(r"Character: Mira"), timeout=WAIT)
        expect(info).to_have_value(re.compile(r"portrait, mira woman, <lora:face:0\.8>"))
        expect(info).to_have_value(re.compile(r"IP-Adapter 0: "))
        # Send to img2img carries the character choice (and the prompt, which is not expanded twice).
        page.locator("#txt2img_send_to_img2img").click()
        expect(page.locator("#img2img_characters")).to_contain_text("Mira")
        expect(page.locator("#img2img_prompt textarea")).to_have_value(re.compile(r"^portrait, mira woman"))
    finally:
        ctx.close()
