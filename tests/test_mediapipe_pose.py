"""OpenPose maps and library poses from real photos with MediaPipe's shipped models (real
weights, no download, on the CPU): scikit-image's astronaut and matplotlib's Grace Hopper."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from webui.errors import UserError
from webui.imaging import openpose_draw
from webui.imaging.poses import COLOURS, load_poses, render_by_key, save_pose
from webui.models import annotators, mediapipe_models, mediapipe_pose

pytestmark = pytest.mark.skipif(mediapipe_models.unavailable() is not None, reason="needs mediapipe==0.10.21")

# Measured with MediaPipe's own face detector (face_detection, full range) on each photo.
ASTRONAUT_FACE = (174, 68, 278, 172)
HOPPER_FACE = (166, 128, 366, 329)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def hopper() -> Image.Image:
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
        return img.convert("RGB")


@pytest.fixture(scope="module")
def empty_cache(tmp_path_factory) -> annotators.AnnotatorCache:
    """No annotator files at all: the OpenPose family must still work."""
    return annotators.AnnotatorCache(tmp_path_factory.mktemp("no-annotators"), torch.device("cpu"))


def inside(p, box) -> bool:
    return p is not None and box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]


def near(a, b, tol) -> bool:
    return abs(a[0] - b[0]) <= tol and abs(a[1] - b[1]) <= tol


@pytest.mark.parametrize("photo, face", [("astronaut", ASTRONAUT_FACE), ("hopper", HOPPER_FACE)])
def test_body_points_land_on_the_person(request, photo, face):
    img = request.getfixturevalue(photo)
    body = mediapipe_pose.detect(img).body
    nose, neck, r_sh, l_sh, r_eye, l_eye = (body[i] for i in (0, 1, 2, 5, 14, 15))
    assert inside(nose, face) and inside(r_eye, face) and inside(l_eye, face)
    assert r_sh[1] > face[3] - 10 and l_sh[1] > face[3] - 10  # shoulders below the face
    assert r_sh[0] < nose[0] < l_sh[0]  # the subject's right shoulder is on the picture's left
    assert r_eye[0] < nose[0] < l_eye[0] and r_eye[1] < nose[1]
    assert near(neck, ((r_sh[0] + l_sh[0]) / 2, (r_sh[1] + l_sh[1]) / 2), 0.5)
    assert all(body[i] is None for i in (9, 10, 12, 13))  # knees and ankles are out of the picture


def test_face_points_follow_the_openpose_layout(astronaut):
    (face,) = mediapipe_pose.detect(astronaut, body=False, face=True).faces
    assert len(face) == 70 and all(inside(p, (160, 50, 295, 190)) for p in face)
    jaw_right, chin, jaw_left = face[0], face[8], face[16]
    assert jaw_right[0] < chin[0] < jaw_left[0] and chin[1] > max(jaw_right[1], jaw_left[1])
    pupil_r, pupil_l, nose_tip, mouth_top = face[68], face[69], face[30], face[51]
    assert pupil_r[0] < nose_tip[0] < pupil_l[0] and pupil_r[1] < nose_tip[1] < mouth_top[1]
    assert all(face[i][1] < pupil_r[1] for i in range(17, 22))  # the brow above the eye
    assert 30 < pupil_l[0] - pupil_r[0] < 60  # pupils an eye-distance apart (~43 px here)


def test_openpose_map_has_the_standard_colours_at_the_keypoints(astronaut, empty_cache):
    body = mediapipe_pose.detect(astronaut).body
    out = np.asarray(annotators.run(empty_cache, "openpose", astronaut, 512, (512, 512)))
    assert out.shape == (512, 512, 3)
    for i in (0, 1, 2, 5, 14, 15, 16, 17):  # nose red, neck orange, shoulders, eyes, ears
        x, y = (round(v) for v in body[i])
        assert tuple(out[y, x]) == COLOURS[i], f"keypoint {i} at {(x, y)}"
    assert (out.sum(-1) > 0).mean() < 0.05  # a skeleton on black, nothing else
    assert not (out == 255).all(-1).any()  # no face dots in the body-only map


def test_map_at_another_size_scales_the_points(astronaut, empty_cache):
    body = mediapipe_pose.detect(astronaut).body
    out = np.asarray(annotators.run(empty_cache, "openpose", astronaut, 512, (256, 256)))
    x, y = (round(v / 2) for v in body[0])
    assert tuple(out[y, x]) == COLOURS[0]


def test_face_and_full_maps_draw_white_face_points(astronaut, empty_cache):
    (face,) = mediapipe_pose.detect(astronaut, body=False, face=True).faces
    for module in ("openpose_face", "openpose_full"):
        out = np.asarray(annotators.run(empty_cache, module, astronaut, 512, (512, 512)))
        white = (out == 255).all(-1)
        ys, xs = np.nonzero(white)
        assert white.sum() > 200  # 70 dots
        assert inside((xs.min(), ys.min()), ASTRONAUT_FACE) and inside((xs.max(), ys.max()), (160, 50, 295, 190))
        x, y = (round(v) for v in face[69])  # the left pupil
        assert white[y, x]
        assert tuple(out[257, 306]) != (0, 0, 0)  # and the body is there too


def test_no_hands_in_these_photos_is_a_note_and_the_hand_map_is_the_body(astronaut, empty_cache):
    found = mediapipe_pose.detect(astronaut, hands=True)
    assert found.hands == [] and "no hands were found in the picture" in found.notes
    body_only = np.asarray(annotators.run(empty_cache, "openpose", astronaut, 512, (512, 512)))
    with_hands = np.asarray(annotators.run(empty_cache, "openpose_hand", astronaut, 512, (512, 512)))
    assert np.array_equal(body_only, with_hands)


def test_hands_are_drawn_with_rainbow_bones_and_blue_points():
    # a flat hand: wrist at the bottom, five fingers of four points each going up
    hand = [(100.0, 180.0)] + [(40.0 + 30 * f, 140.0 - 20 * j) for f in range(5) for j in range(4)]
    out = np.asarray(openpose_draw.draw_openpose((200, 200), (200, 200), hands=[hand]))
    assert tuple(out[180, 100]) == openpose_draw.HAND_POINT == (0, 0, 255)
    assert tuple(out[130, 70]) == openpose_draw.HAND_COLOURS[5]  # index finger, first to second joint
    assert openpose_draw.HAND_COLOURS[0] == (255, 0, 0) and len(set(openpose_draw.HAND_COLOURS)) == 20


def test_the_controlnet_preprocessor_makes_the_map_without_annotator_files(astronaut, empty_cache):
    from webui.engine.extensions.controlnet import control_image, parse_units

    (unit,) = parse_units([dict(enabled=True, model="any", module="openpose_full", image=astronaut)])
    out = np.asarray(control_image(unit, 256, 256, empty_cache))
    assert out.shape == (256, 256, 3)
    x, y = (round(v / 2) for v in mediapipe_pose.detect(astronaut).body[2])
    assert (out[y - 3:y + 4, x - 3:x + 4] == COLOURS[2]).all(-1).any()  # the right shoulder, at half size
    assert (out == 255).all(-1).sum() > 50
    assert annotators.notes("openpose_full") == []


def test_without_files_or_mediapipe_the_error_names_both(astronaut, empty_cache, monkeypatch):
    monkeypatch.setattr(mediapipe_models, "unavailable", lambda: "the MediaPipe detectors need mediapipe")
    with pytest.raises(UserError) as e:
        annotators.run(empty_cache, "openpose_hand", astronaut, 512, (64, 64))
    assert e.value.field == "controlnet_units"
    assert "body_pose_model.pth" in str(e.value) and "MediaPipe" in str(e.value)
    assert "body skeleton only" in annotators.notes("openpose_full")[0]


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_other_image_modes_are_converted(astronaut, mode):
    base = mediapipe_pose.detect(astronaut).body
    if mode == "I;16":
        img = Image.fromarray(np.asarray(astronaut.convert("L"), np.uint16) * 257)
    else:
        img = astronaut.convert(mode)
    assert img.mode == mode
    body = mediapipe_pose.detect(img).body
    for i, tol in ((0, 0.03), (14, 0.03), (15, 0.03), (2, 0.05), (5, 0.05)):  # shoulders in a suit: vaguer
        assert near(body[i], base[i], 512 * tol), (i, body[i], base[i])


def test_transparent_parts_become_white_and_16_bit_is_scaled_to_8(astronaut):
    rgba = np.asarray(astronaut.convert("RGBA")).copy()
    rgba[:100, :100, 3] = 0  # a transparent corner over the photo's own colours
    arr, scale = mediapipe_models.rgb_array(Image.fromarray(rgba))
    assert scale == 1.0 and arr.shape == (512, 512, 3) and (arr[:100, :100] == 255).all()
    assert np.array_equal(arr[200:, 200:], np.asarray(astronaut)[200:, 200:])
    grey16 = Image.fromarray(np.asarray(astronaut.convert("L"), np.uint16) * 257)
    arr, _ = mediapipe_models.rgb_array(grey16)
    assert np.abs(arr[..., 0].astype(int) - np.asarray(astronaut.convert("L"))).max() <= 1


def test_a_large_photo_is_scaled_for_detection_and_points_map_back(astronaut):
    small = mediapipe_pose.detect(astronaut).body
    big_img = astronaut.resize((2048, 2048), Image.LANCZOS)
    assert max(big_img.size) > mediapipe_models.MAX_SIDE
    big = mediapipe_pose.detect(big_img).body
    for i, tol in ((0, 0.03), (14, 0.03), (15, 0.03), (16, 0.03), (17, 0.03), (1, 0.05), (2, 0.05), (5, 0.05)):
        assert near((big[i][0] / 4, big[i][1] / 4), small[i], 512 * tol), (i, big[i], small[i])


# ---- the pose library -----------------------------------------------------------------------

def test_pose_from_photo_is_saved_and_rendered_by_name(hopper, tmp_path):
    data = mediapipe_pose.pose_from_photo(hopper)
    assert data["aspect"] == pytest.approx(512 / 600, abs=1e-3) and len(data["keypoints"]) == 18
    nose = data["keypoints"][0]
    assert inside((nose[0] * 512, nose[1] * 600), HOPPER_FACE)
    pose = save_pose("Grace at her desk", data, tmp_path)
    assert pose.key == "Grace_at_her_desk"
    stored = json.loads((tmp_path / "Grace_at_her_desk.json").read_text())
    assert stored["name"] == "Grace at her desk" and stored["keypoints"] == data["keypoints"]
    poses, problems = load_poses(tmp_path)
    assert "Grace_at_her_desk" in poses
    out = np.asarray(render_by_key("Grace_at_her_desk", 512, 600, tmp_path))
    x, y = round(nose[0] * 512), round(nose[1] * 600)
    assert (out[y - 1:y + 2, x - 1:x + 2] == COLOURS[0]).all(-1).any()
    with pytest.raises(UserError, match="already in the pose library"):
        save_pose("Grace at her desk", data, tmp_path)


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "", "   ", "x" * 65, ".hidden", "c:\\pose", "a.json"])
def test_bad_pose_names_are_refused(name, tmp_path):
    data = {"aspect": 1.0, "keypoints": [[0.5, 0.5]] * 18}
    with pytest.raises(UserError) as e:
        save_pose(name, data, tmp_path / "poses")
    assert e.value.field == "pose_name"
    assert not (tmp_path / "poses").exists() or not any((tmp_path / "poses").iterdir())


def test_a_photo_with_no_person_is_a_clear_error():
    from skimage import data

    with pytest.raises(UserError, match="no person was found") as e:
        mediapipe_pose.pose_from_photo(Image.fromarray(data.coffee()))
    assert e.value.field == "image"


def test_the_rest_route_detects_and_saves(hopper, tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api.routes import API_PREFIX, build_router
    from webui.serving.service import Service
    from webui.settings import Settings

    service = Service.create(Settings(models_dir=tmp_path / "models", outputs_dir=tmp_path / "out", device="cpu"),
                             load_model=False)
    service.poses_dir = tmp_path / "poses"
    app = FastAPI()
    app.include_router(build_router(service))
    client = TestClient(app)
    buf = io.BytesIO()
    hopper.save(buf, format="PNG")
    photo = base64.b64encode(buf.getvalue()).decode()
    r = client.post(f"{API_PREFIX}/pose-from-photo", json={"image": photo, "name": "hopper"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key"] == "hopper" and (tmp_path / "poses" / "hopper.json").is_file()
    assert len(body["pose"]["keypoints"]) == 18
    assert Image.open(io.BytesIO(base64.b64decode(body["preview"]))).size[1] == 384
    r = client.post(f"{API_PREFIX}/pose-from-photo", json={"image": photo, "name": "../x"})
    assert r.status_code in (400, 422) and "pose name" in r.text
    r = client.post(f"{API_PREFIX}/pose-from-photo", json={"image": photo})
    assert r.status_code == 200 and r.json()["key"] is None


def test_the_controlnet_panel_detects_and_saves_a_pose_from_a_photo(hopper, astronaut, tmp_path):
    import gradio as gr

    from webui.serving.service import Service
    from webui.settings import Settings
    from webui.ui.controlnet_panel import controlnet_accordion

    service = Service.create(Settings(models_dir=tmp_path / "models", outputs_dir=tmp_path / "out", device="cpu"),
                             load_model=False)
    service.poses_dir = tmp_path / "poses"
    with gr.Blocks() as demo:
        out = controlnet_accordion("txt2img", service)
    fns = {f.fn.__name__: f.fn for f in demo.fns.values() if f.fn is not None}
    pose, shown, note = fns["detect"](hopper)
    assert len(pose["keypoints"]) == 18 and shown.size[1] == 384 and note == ""
    assert "no person was found" in fns["detect"](Image.new("RGB", (256, 256), "grey"))[2]
    status, *lists = fns["keep"](pose, "from the panel")
    assert "from_the_panel" in status and len(lists) == 3
    assert "from_the_panel" in [v for _, v in lists[0].choices]  # the units' pose lists offer it now
    with pytest.raises(gr.Error, match="pose name"):
        fns["keep"](pose, "../x")
    assert "controlnet_0_pose" in out
