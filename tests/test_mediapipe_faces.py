"""MediaPipe's shipped detectors on real photos: the default face detector (LFW faces found,
false alarms on LFW non-faces), face-mesh masks, the face pass repainting only inside them,
odd image modes, very large pictures, and the fallback to Haar without the wheel."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from webui.engine.stages import detailer
from webui.models import faces, mediapipe_models
from webui.models.face_detectors import HaarFaceDetector
from webui.models.mediapipe_faces import MediaPipeFaceDetector
from webui.serving.service import Service
from webui.settings import Settings

skdata = pytest.importorskip("skimage.data")
cbook = pytest.importorskip("matplotlib.cbook")
# Tests on the real weights; the ones that simulate a missing wheel run everywhere.
needs_mediapipe = pytest.mark.skipif(mediapipe_models.unavailable() is not None,
                                     reason=mediapipe_models.unavailable() or "")

FAST = dict(face_detail_width=64, face_detail_height=64, steps=3, sampler_name="Euler")


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def detector() -> MediaPipeFaceDetector:
    return MediaPipeFaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


@pytest.fixture(scope="module")
def hopper() -> Image.Image:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return Image.open(f).convert("RGB")


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory) -> Service:
    root = tmp_path_factory.mktemp("mp-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(tiny_models["sd1"].file, root / "Stable-diffusion" / "tiny.safetensors")
    return Service.create(Settings(models_dir=root, outputs_dir=tmp_path_factory.mktemp("out"), device="cpu"))


def lfw_counts(det) -> tuple[int, int]:
    """(faces found among LFW's 100 faces, pictures with a "face" among its 100 non-faces); the
    25x25 crops are upscaled to 128x128 for detection."""
    images = skdata.lfw_subset()  # 200 x 25 x 25 floats: 100 faces, then 100 non-faces
    hits = []
    for a in images:
        img = Image.fromarray((a * 255).round().astype(np.uint8)).resize((128, 128), Image.BICUBIC)
        hits.append(bool(det.detect(img)))
    return sum(hits[:100]), sum(hits[100:])


@needs_mediapipe
def test_lfw_faces_found_and_false_alarms(detector):
    found, false_alarms = lfw_counts(detector)
    # measured: 98 found, 1 false alarm
    assert found >= 96, f"found {found} of 100 LFW faces"
    assert false_alarms <= 2, f"{false_alarms} false alarms on 100 non-faces"


@needs_mediapipe
def test_astronaut_face_mask_covers_the_face_not_the_corners(detector, astronaut):
    boxes = detector.detect(astronaut)
    assert len(boxes) == 1
    box = boxes[0]
    assert abs(box.center[0] - 225) < 25 and abs(box.center[1] - 125) < 30 and 70 < box.w < 140
    plan = detailer.plan_faces(astronaut, detailer.FaceDetailOptions(width=64, height=64), detector, (64, 64))[0]
    mask = np.asarray(plan.mask)
    cx, cy = (int(v) for v in box.center)
    assert mask[cy, cx] == 255
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert mask[y, x] == 0
    # the outline, not the ellipse of the box: the mask follows the face, so it differs from it
    ellipse = detailer.feathered_mask(astronaut.size, detailer._grow(box, astronaut.size), 4, "ellipse")
    assert np.abs(px(ellipse) - px(plan.mask)).max() == 255
    x0, y0, x1, y1 = plan.region
    mx0, my0, mx1, my1 = plan.mask.getbbox()
    assert x0 <= mx0 and y0 <= my0 and x1 >= mx1 and y1 >= my1  # the crop holds the whole mask


@needs_mediapipe
def test_face_pass_on_grace_hopper_repaints_only_inside_the_mask(service, hopper):
    req = service.request(dict(prompt="portrait photo of an admiral", seed=11, face_detail_denoising_strength=0.7,
                               init_image=hopper, **FAST), "img2img")
    assert req.face_detail_detector == "mediapipe"
    r = service.manager.detail_faces(req)
    out = r.images[0]
    assert out.size == hopper.size
    plans = detailer.plan_faces(hopper, detailer.FaceDetailOptions(width=64, height=64),
                                faces.make_detector(None, service.settings.models_dir), (64, 64))
    assert len(plans) == 1
    mask = np.asarray(plans[0].mask)
    diff = np.abs(px(out) - px(hopper)).max(axis=2)
    assert (diff[mask == 0] == 0).all(), "a pixel outside the face mask changed"
    assert diff[mask == 255].mean() > 5, "the face was not repainted"
    assert (mask == 0).mean() > 0.7  # the face, not the background, is repainted
    assert "Face detail detector: mediapipe" in r.infotexts[0] and "Face detail faces: 1" in r.infotexts[0]


@needs_mediapipe
def test_no_face_is_a_notice_not_a_crash(service, detector):
    sky = Image.fromarray(np.tile(np.linspace(40, 220, 256, dtype=np.uint8)[:, None, None], (1, 256, 3)))
    assert detector.detect(sky) == []
    req = service.request(dict(prompt="sky", seed=1, init_image=sky, **FAST), "img2img")
    r = service.manager.detail_faces(req)
    assert np.array_equal(px(r.images[0]), px(sky))
    assert any("no face found" in w for w in r.warnings)


@needs_mediapipe
@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "I"])
def test_grayscale_alpha_and_16_bit_inputs(detector, astronaut, mode):
    if mode == "RGBA":
        img = astronaut.convert("RGBA")
    elif mode == "L":
        img = astronaut.convert("L")
    else:
        grey = np.asarray(astronaut.convert("L"), dtype=np.uint16) * 257  # 16-bit range
        img = Image.fromarray(grey.astype(np.int32 if mode == "I" else np.uint16))
        img = img if mode == "I" else img.convert("I;16") if img.mode != "I;16" else img
    boxes = detector.detect(img)
    assert len(boxes) == 1 and abs(boxes[0].center[0] - 225) < 25, (mode, boxes)
    assert detector.face_outline(img, boxes[0])


@needs_mediapipe
def test_very_large_picture_is_scaled_for_detection_and_boxes_map_back(detector, astronaut):
    big = astronaut.resize((4000, 4000), Image.BICUBIC)
    boxes = detector.detect(big)
    assert len(boxes) == 1
    f = 4000 / 512
    small = detector.detect(astronaut)[0]
    cx, cy = boxes[0].center
    assert abs(cx - small.center[0] * f) < 0.15 * small.w * f and abs(cy - small.center[1] * f) < 0.15 * small.h * f
    assert 0.7 < boxes[0].w / (small.w * f) < 1.4
    outline = detector.face_outline(big, boxes[0])
    xs = [p[0] for p in outline]
    assert min(xs) > 1000 and max(xs) < 2400  # in the big picture's pixels


def test_without_mediapipe_the_default_falls_back_to_haar(monkeypatch, tmp_path):
    why = "the MediaPipe detectors need the package mediapipe==0.10.21 (not available here: test)"
    monkeypatch.setattr(mediapipe_models, "unavailable", lambda: why)
    assert faces.list_detectors(tmp_path)[0] == "haar" and "mediapipe" not in faces.list_detectors(tmp_path)
    assert isinstance(faces.make_detector(None, tmp_path), HaarFaceDetector)
    assert isinstance(faces.make_detector("mediapipe", tmp_path), HaarFaceDetector)
    name, note = faces.resolve_detector("mediapipe")
    assert name == "haar" and "mediapipe==0.10.21" in note
    assert faces.resolve_detector("haar") == ("haar", None)


def test_without_mediapipe_the_face_pass_says_why(monkeypatch, service, astronaut):
    monkeypatch.setattr(mediapipe_models, "unavailable", lambda: "the MediaPipe detectors need mediapipe (test)")
    req = service.request(dict(prompt="portrait", seed=2, init_image=astronaut, **FAST), "img2img")
    r = service.manager.detail_faces(req)
    assert any("used the 'haar' detector because the MediaPipe detectors need mediapipe" in w for w in r.warnings)
    assert "Face detail detector: haar" in r.infotexts[0] and "Face detail faces: 1" in r.infotexts[0]


def test_app_starts_without_the_wheel_and_offers_haar(monkeypatch, service):
    import sys

    from webui.ui import build_ui

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # `import mediapipe` now fails
    why = mediapipe_models.unavailable()
    assert why and "mediapipe==0.10.21" in why and "--no-deps" in why
    demo = build_ui(service)
    dropdowns = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "txt2img_face_detector"]
    assert dropdowns and dropdowns[0].value == "haar"
    assert "mediapipe" not in [c[0] if isinstance(c, tuple) else c for c in dropdowns[0].choices]
    demo.close()


@needs_mediapipe
def test_confidence_filters_without_new_graphs(astronaut):
    score = MediaPipeFaceDetector().detect(astronaut)[0].score
    assert MediaPipeFaceDetector(confidence=min(1.0, score + 0.01)).detect(astronaut) == []
    assert len(MediaPipeFaceDetector(confidence=max(0.5, score - 0.05)).detect(astronaut)) == 1
    graphs = [key for key in mediapipe_models._solutions if key[0] == "face_detection"]
    assert len(graphs) == 2  # short and full range, built once whatever the confidence
