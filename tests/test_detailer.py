"""The face detail pass on the tiny SD1 model: it finds the astronaut's face, repaints inside
the feathered mask only (every other pixel exactly unchanged), is repeatable, handles a face
at the border, and says so when there is no face."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from webui.engine.stages import detailer
from webui.models.faces import FaceBox, make_detector
from webui.engine.jobs import Job
from webui.serving.service import Service
from webui.settings import Settings

skdata = pytest.importorskip("skimage.data")

FAST = dict(face_detail_width=64, face_detail_height=64, steps=3, sampler_name="Euler")


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory) -> Service:
    root = tmp_path_factory.mktemp("detail-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "tiny.safetensors")
    return Service.create(Settings(models_dir=root, outputs_dir=tmp_path_factory.mktemp("out"), device="cpu"))


def options(**kw) -> detailer.FaceDetailOptions:
    return detailer.FaceDetailOptions(**{"width": 64, "height": 64, **kw})


def test_default_detector_finds_the_astronaut_face(service, astronaut):
    plans = detailer.plan_faces(astronaut, options(), make_detector(None, service.settings.models_dir), (64, 64))
    assert len(plans) == 1
    box = plans[0].box
    assert abs(box.x - 177) < 25 and abs(box.y - 66) < 25 and 70 < box.w < 130
    x0, y0, x1, y1 = plans[0].region
    assert x0 <= box.x and y0 <= box.y and x1 >= box.x + box.w and y1 >= box.y + box.h
    assert x1 - x0 == y1 - y0  # the aspect of the 64x64 inpaint size


def test_face_pass_changes_only_the_feathered_face(service, astronaut):
    req = service.request(dict(prompt="portrait photo of an astronaut", seed=7, face_detail_denoising_strength=0.6,
                               init_image=astronaut, **FAST), "img2img")
    r = service.manager.detail_faces(req)
    out = r.images[0]
    assert out.size == astronaut.size
    plans = detailer.plan_faces(astronaut, options(), make_detector(None, service.settings.models_dir), (64, 64))
    mask = np.asarray(plans[0].mask)
    diff = np.abs(px(out) - px(astronaut)).max(axis=2)
    assert (diff[mask == 0] == 0).all(), "a pixel outside the feathered face mask changed"
    assert diff[mask == 255].mean() > 5, "the face was not repainted"
    info = r.infotexts[0]
    assert "Face detail faces: 1" in info and "Face detail denoising strength: 0.6" in info
    assert "Face detail size: 64x64" in info and "Seed: 7" in info
    assert "base" not in r.memory and "face detail" in r.memory
    again = service.manager.detail_faces(req)
    assert np.array_equal(px(again.images[0]), px(out))


def test_face_pass_after_img2img_in_one_request(service, astronaut):
    # Denoising 0 keeps the img2img result equal to the input, so the face pass is all that changes.
    base = dict(prompt="portrait photo", seed=3, init_image=astronaut, width=512, height=512,
                denoising_strength=0.0, save_images=False, **FAST)
    plain = service.generate(service.request(base, "img2img"))
    assert np.array_equal(px(plain.images[0]), px(astronaut))
    detailed = service.generate(service.request({**base, "face_detail": True,
                                                  "face_detail_prompt": "smiling face, detailed eyes"}, "img2img"))
    assert np.abs(px(detailed.images[0]) - px(astronaut)).max() > 0
    assert 'Face detail prompt: "smiling face, detailed eyes"' in detailed.infotexts[0]
    assert "Face detail faces: 1" in detailed.infotexts[0]


def test_no_face_returns_the_image_unchanged_with_a_warning(service):
    base = dict(prompt="a foggy landscape", seed=5, save_images=False, width=64, height=64, steps=3,
                sampler_name="Euler")
    plain = service.generate(service.request(base))
    r = service.generate(service.request({**base, "face_detail": True, **FAST}))
    assert np.array_equal(px(r.images[0]), px(plain.images[0]))
    assert any("no face found" in w for w in r.warnings)
    assert "Face detail faces: 0" in r.infotexts[0]


class FixedBoxes:
    """A detector that reports given boxes: puts a face where the test needs one."""

    def __init__(self, *boxes: FaceBox):
        self.boxes = list(boxes)

    def detect(self, image):
        return list(self.boxes)


def test_face_at_the_border(service, astronaut):
    image = astronaut.crop((200, 40, 456, 296))  # the face is cut by the left edge
    req = service.request(dict(prompt="portrait", seed=1, init_image=image, face_detail_denoising_strength=0.7,
                               face_detail_padding=64, **FAST), "img2img")
    outcome = {}

    def inpaint(crop, mask, prompt, negative, region):
        sub = req.replace(task="inpaint", init_image=crop, mask=mask, width=64, height=64, mask_blur=0,
                          denoising_strength=0.7)
        outcome.setdefault("sizes", []).append(crop.size)
        return service.manager.generate(sub, Job()).images[0]

    box = FaceBox(0, 20, 70, 90)
    res = detailer.detail_faces(image, options(padding=64, denoising_strength=0.7), FixedBoxes(box), inpaint,
                                (64, 64), "portrait")
    assert res.image.size == image.size and outcome["sizes"] == [(64, 64)]
    mask = np.asarray(res.masks[0])
    diff = np.abs(px(res.image) - px(image)).max(axis=2)
    assert (diff[mask == 0] == 0).all()
    assert diff[mask == 255].max() > 0
    assert mask[:, 0].max() == 255  # the mask reaches the border the face touches


def test_selection_options(service, astronaut):
    det = FixedBoxes(FaceBox(10, 10, 40, 40, 0.9), FaceBox(100, 100, 80, 80, 0.2), FaceBox(300, 50, 60, 60, 0.8))
    plans = detailer.plan_faces(astronaut, options(max_faces=2, confidence=0.5), det, (64, 64))
    assert [p.box.w for p in plans] == [60, 40]  # confident ones, largest first
    plans = detailer.plan_faces(astronaut, options(max_faces=0, confidence=0.0, order="left-to-right"), det, (64, 64))
    assert [p.box.x for p in plans] == [10, 100, 300]


def test_per_face_prompts():
    assert detailer.face_prompts("", "main", 2) == ["main", "main"]
    assert detailer.face_prompts("a [SEP] b", "main", 3) == ["a", "b", "b"]
    assert detailer.face_prompts("[PROMPT], sharp eyes [SEP]", "main", 2) == ["main, sharp eyes", "main"]


def test_native_size_follows_the_model(service):
    assert detailer.native_size(service.manager.active) == (512, 512)  # an SD1 checkpoint


def test_adetailer_api_args_are_understood(service):
    req = service.request(dict(prompt="p", alwayson_scripts={"ADetailer": {"args": [
        True, False, {"ad_model": "face_yolov8n.pt", "ad_prompt": "detailed face", "ad_confidence": 0.5,
                      "ad_denoising_strength": 0.35, "ad_mask_k_largest": 2}]}}))
    assert req.face_detail and req.face_detail_prompt == "detailed face"
    assert (req.face_detail_confidence, req.face_detail_denoising_strength, req.face_detail_max_faces) == (0.5, 0.35, 2)
    off = service.request(dict(prompt="p", alwayson_scripts={"ADetailer": {"args": [False, {"ad_model": "x"}]}}))
    assert not off.face_detail


def test_bad_face_options_are_user_errors(service):
    from webui.errors import UserError
    with pytest.raises(UserError) as e:
        service.request(dict(face_detail=True, face_detail_order="random"))
    assert e.value.field == "face_detail_order"
    with pytest.raises(UserError, match="yunet"):
        service.generate(service.request(dict(face_detail=True, face_detail_detector="yunet", width=64, height=64,
                                              steps=1, save_images=False)))
