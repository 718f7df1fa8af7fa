import pytest
from PIL import Image

from webui.errors import UserError
from webui.models.face_detectors import FaceBox, FaceDetector, HaarFaceDetector
from webui.models.mediapipe_faces import MediaPipeFaceDetector
from webui.models.faces import (
    face_crop_region,
    list_detectors,
    make_detector,
    select_faces,
)

skimage_data = pytest.importorskip("skimage.data")

ASTRONAUT_FACE = FaceBox(177, 66, 95, 95)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> FaceDetector:
    return make_detector("haar", tmp_path_factory.mktemp("models"))


def test_default_detector_finds_the_astronaut(detector, astronaut):
    assert isinstance(detector, HaarFaceDetector)
    assert isinstance(detector, FaceDetector)
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    assert faces[0].iou(ASTRONAUT_FACE) > 0.5
    assert 0.0 < faces[0].score <= 1.0


def test_blank_and_tiny_images_have_no_faces(detector):
    assert detector.detect(Image.new("RGB", (512, 512), "white")) == []
    assert detector.detect(Image.new("RGB", (512, 384), (40, 90, 160))) == []
    assert detector.detect(Image.new("RGB", (8, 8))) == []


def test_detection_scales_back_to_original_coordinates(detector, astronaut):
    big = astronaut.resize((1536, 1536), Image.Resampling.BICUBIC)  # over the detector's max side
    faces = detector.detect(big)
    assert len(faces) == 1
    expected = FaceBox(177 * 3, 66 * 3, 95 * 3, 95 * 3)
    assert faces[0].iou(expected) > 0.5


def test_face_near_the_border_gives_a_valid_clamped_region(detector, astronaut):
    img = astronaut.crop((170, 60, 512, 512))  # the face now starts a few pixels from the corner
    faces = detector.detect(img)
    assert len(faces) == 1
    box = faces[0]
    assert box.x < 20 and box.y < 20
    x0, y0, x1, y1 = face_crop_region(box, img.size, padding_px=32, target_aspect=1.0)
    assert (x0, y0) == (0, 0)
    assert x1 <= img.width and y1 <= img.height
    assert x1 - x0 == y1 - y0  # square, as asked
    assert x1 >= box.x + box.w and y1 >= box.y + box.h


def test_face_cut_by_the_border_region_is_clamped():
    # a box sticking out on the left and top of a 300x200 image
    region = face_crop_region(FaceBox(-30, -20, 100, 100), (300, 200), padding_px=16, target_aspect=1.0)
    x0, y0, x1, y1 = region
    assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 200
    assert x1 >= 70 + 16 and y1 >= 80 + 16  # the visible face plus padding is inside
    assert x1 - x0 == y1 - y0
    # the right/bottom border, with a wide aspect
    x0, y0, x1, y1 = face_crop_region(FaceBox(250, 150, 80, 80), (300, 200), padding_px=8, target_aspect=1.5)
    assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 200
    assert x0 <= 242 and y0 <= 142
    assert abs((x1 - x0) / (y1 - y0) - 1.5) < 0.02


def test_face_crop_region_aspect_and_padding():
    box = FaceBox(100, 100, 50, 80)
    assert face_crop_region(box, (1000, 1000), 10, target_aspect=None) == (90, 90, 160, 190)
    x0, y0, x1, y1 = face_crop_region(box, (1000, 1000), 10, target_aspect=1.0)
    assert (x1 - x0, y1 - y0) == (100, 100)
    assert x0 <= 90 and x1 >= 160 and y0 <= 90 and y1 >= 190
    x0, y0, x1, y1 = face_crop_region(box, (1000, 1000), 0, target_aspect=768 / 512)
    assert y1 - y0 == 80 and x1 - x0 == 120
    # image too narrow for the aspect: full width, face kept
    x0, y0, x1, y1 = face_crop_region(FaceBox(10, 10, 40, 90), (60, 400), 0, target_aspect=2.0)
    assert (x0, x1) == (0, 60) and y0 <= 10 and y1 >= 100
    with pytest.raises(UserError):
        face_crop_region(box, (1000, 1000), -1)


def test_select_faces_order_limit_and_confidence():
    a = FaceBox(300, 10, 50, 50, 0.9)
    b = FaceBox(10, 10, 100, 100, 0.4)
    c = FaceBox(150, 200, 70, 70, 0.8)
    boxes = [a, b, c]
    assert select_faces(boxes, 0, 0.0) == [b, c, a]
    assert select_faces(boxes, 2, 0.0) == [b, c]
    assert select_faces(boxes, 2, 0.0, order="left-to-right") == [b, c]
    assert select_faces(boxes, 0, 0.0, order="left-to-right") == [b, c, a]
    assert select_faces(boxes, 0, 0.5) == [c, a]
    assert select_faces(boxes, 1, 0.0, order="confidence") == [a]
    assert select_faces([], 3, 0.5) == []
    with pytest.raises(UserError):
        select_faces(boxes, 1, 0.0, order="random")
    with pytest.raises(UserError):
        select_faces(boxes, -1, 0.0)
    with pytest.raises(UserError):
        select_faces(boxes, 1, 1.5)


def test_make_detector_missing_model_says_where(tmp_path):
    assert list_detectors(tmp_path)[:2] == ["mediapipe", "haar"]
    assert "yunet" not in list_detectors(tmp_path)
    with pytest.raises(UserError) as e:
        make_detector("yunet", tmp_path)
    msg = str(e.value)
    assert "face_detection_yunet" in msg and "face_detection" in msg
    with pytest.raises(UserError):
        make_detector("no-such-detector", tmp_path)
    assert isinstance(make_detector(None, tmp_path), MediaPipeFaceDetector)
    assert isinstance(make_detector("haar", tmp_path), HaarFaceDetector)


def test_yunet_with_a_bad_file_is_a_user_error(tmp_path):
    folder = tmp_path / "face_detection"
    folder.mkdir()
    (folder / "face_detection_yunet_2023mar.onnx").write_text("not an onnx file")
    assert "yunet" in list_detectors(tmp_path)
    with pytest.raises(UserError) as e:
        make_detector("yunet", tmp_path)
    assert "face_detection_yunet_2023mar.onnx" in str(e.value)


def test_facebox_geometry():
    a = FaceBox(0, 0, 10, 10)
    assert a.iou(a) == 1.0
    assert a.iou(FaceBox(20, 20, 5, 5)) == 0.0
    assert abs(a.iou(FaceBox(5, 0, 10, 10)) - 50 / 150) < 1e-9
    assert a.region == (0, 0, 10, 10) and a.center == (5.0, 5.0)
