"""Inpaint masks found in the picture (`mask_preset`): face ovals, the person, the background,
hands; the request field, its infotext round trip, inpainting with it on the tiny model, and
clear errors for an unknown preset or a picture where the preset finds nothing."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from webui.errors import UserError
from webui.metadata.infotext import infotext_to_fields
from webui.models import mediapipe_masks, mediapipe_models
from webui.request.generation import build_request
from webui.serving.service import Service
from webui.settings import Limits, Settings

skdata = pytest.importorskip("skimage.data")
# Tests on the real weights; the ones that simulate a missing wheel run everywhere.
needs_mediapipe = pytest.mark.skipif(mediapipe_models.unavailable() is not None,
                                     reason=mediapipe_models.unavailable() or "")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory) -> Service:
    root = tmp_path_factory.mktemp("mask-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "tiny.safetensors")
    return Service.create(Settings(models_dir=root, outputs_dir=tmp_path_factory.mktemp("out"), device="cpu"))


def on(mask: Image.Image) -> np.ndarray:
    assert mask.mode == "L"
    return np.asarray(mask) > 127


@needs_mediapipe
def test_face_preset_covers_the_face_not_the_corners(astronaut):
    m = on(mediapipe_masks.auto_mask(astronaut, "face"))
    assert m.shape == (512, 512)
    assert m[125, 225]  # the face box centre (MediaPipe: 178,83 95x95)
    assert not m[0, 0] and not m[0, -1] and not m[-1, 0] and not m[-1, -1]
    assert 0.02 < m.mean() < 0.08  # the face, not the picture (measured 0.036)


@needs_mediapipe
def test_person_and_background_presets(astronaut):
    person = on(mediapipe_masks.auto_mask(astronaut, "person"))
    assert person.mean() > 1 / 3  # measured 0.545
    assert not person[0, 0] and not person[0, -1]  # the top corners are background
    assert person[300, 256]  # her chest
    background = on(mediapipe_masks.auto_mask(astronaut, "background"))
    assert np.array_equal(background, ~person)


@needs_mediapipe
def test_hands_preset_hulls_grown(monkeypatch):
    # No photo with hands ships with the test libraries: the landmarks are given, the hull and
    # its growth are what is tested. (No hand in a photo is tested below with the astronaut.)
    pts = [(0.2, 0.5), (0.3, 0.3), (0.4, 0.5), (0.3, 0.6)] + [(0.3, 0.45)] * 17
    hand = SimpleNamespace(landmark=[SimpleNamespace(x=x, y=y) for x, y in pts])
    monkeypatch.setattr(mediapipe_models, "process",
                        lambda kind, image, **kw: (SimpleNamespace(multi_hand_landmarks=[hand]), 1.0))
    m = on(mediapipe_masks.auto_mask(Image.new("RGB", (200, 100)), "hands"))
    assert m[50, 60] and m[45, 60]  # inside the hull
    assert m[50, 38] and not m[50, 30]  # grown past the hull's left point (x=40) by ~15% of 40 px
    assert not m[:, 100:].any()


@needs_mediapipe
@pytest.mark.parametrize("preset, what", [("face", "face"), ("hands", "hand")])
def test_nothing_found_is_a_user_error_on_the_field(preset, what):
    sky = Image.fromarray(np.tile(np.linspace(40, 220, 256, dtype=np.uint8)[:, None, None], (1, 256, 3)))
    with pytest.raises(UserError, match=f"no {what} found for the mask preset '{preset}'") as e:
        mediapipe_masks.auto_mask(sky, preset)
    assert e.value.field == "mask_preset"


def test_request_field_is_validated_without_mediapipe(astronaut):
    lim = Limits()
    req = build_request(dict(init_image=astronaut, mask_preset="Face"), lim, "img2img")
    assert req.mask_preset == "face" and req.task == "inpaint" and req.mask is None
    assert build_request(dict(init_image=astronaut, mask_preset="none"), lim, "img2img").task == "img2img"
    with pytest.raises(UserError, match="mask_preset must be one of face, person, background, hands") as e:
        build_request(dict(init_image=astronaut, mask_preset="elbows"), lim, "img2img")
    assert e.value.field == "mask_preset"
    with pytest.raises(UserError) as e:
        build_request(dict(mask_preset="face"), lim, "txt2img")
    assert e.value.field == "mask_preset"


def test_mask_preset_round_trips_through_infotext():
    fields = infotext_to_fields("a portrait\nSteps: 3, Sampler: Euler, Seed: 1, Size: 64x64, Mask blur: 4, "
                                "Mask preset: face")
    assert fields["mask_preset"] == "face" and "Mask preset" not in fields["extra"]


@needs_mediapipe
def test_inpaint_with_the_face_preset_repaints_only_the_face(service, astronaut):
    img = astronaut.resize((128, 128), Image.LANCZOS)
    req = service.request(dict(prompt="a portrait", seed=3, steps=3, sampler_name="Euler", width=128, height=128,
                               init_image=img, mask_preset="face", mask_blur=0, denoising_strength=0.9,
                               save_images=False), "img2img")
    assert req.task == "inpaint" and req.mask is not None
    face = on(req.mask)
    r = service.generate(req)
    out = np.asarray(r.images[0], dtype=np.int16)
    diff = np.abs(out - np.asarray(img, dtype=np.int16)).max(axis=2)
    assert (diff[~face] == 0).all() and diff[face].mean() > 5
    assert "Mask preset: face" in r.infotexts[0]
    again = infotext_to_fields(r.infotexts[0])
    assert again["mask_preset"] == "face"


@needs_mediapipe
def test_preset_is_united_with_a_drawn_mask(service, astronaut):
    drawn = Image.new("L", astronaut.size, 0)
    drawn.paste(255, (0, 400, 100, 512))
    req = service.request(dict(init_image=astronaut, mask=drawn, mask_preset="face", steps=1), "inpaint")
    m = on(req.mask)
    assert m[450, 50] and m[125, 225] and not m[0, 0]


@needs_mediapipe
def test_nothing_found_through_the_service_then_it_keeps_serving(service):
    sky = Image.fromarray(np.tile(np.linspace(40, 220, 128, dtype=np.uint8)[:, None, None], (1, 128, 3)))
    with pytest.raises(UserError, match="no face found for the mask preset 'face'") as e:
        service.request(dict(init_image=sky, mask_preset="face", width=64, height=64), "img2img")
    assert e.value.field == "mask_preset"
    ok = service.request(dict(init_image=sky, width=64, height=64, steps=1, save_images=False), "img2img")
    assert service.generate(ok).images[0].size == (64, 64)


def test_without_mediapipe_a_preset_says_why(monkeypatch, service, astronaut):
    monkeypatch.setattr(mediapipe_models, "unavailable", lambda: "the MediaPipe detectors need mediapipe (test)")
    with pytest.raises(UserError, match="need mediapipe") as e:
        service.request(dict(init_image=astronaut, mask_preset="person"), "img2img")
    assert e.value.field == "mask_preset"
