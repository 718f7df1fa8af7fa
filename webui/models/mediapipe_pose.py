"""OpenPose keypoints from a photo with MediaPipe's shipped models (no download): the body in
the 18-point COCO/OpenPose order built from BlazePose's 33 points, hands (21 points, MediaPipe's
order is OpenPose's) and 70 OpenPose face points picked from the 478-point face mesh.

Points are pixels of the photo as given: MediaPipe answers in 0..1 of the array it saw, so a
photo scaled down for detection (`mediapipe_models.MAX_SIDE`) maps back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from . import mediapipe_models
from ..errors import UserError

Point = tuple[float, float]

# OpenPose body index -> BlazePose index; the neck (1) is the midpoint of the shoulders.
BODY_FROM_BLAZEPOSE = {0: 0, 2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 8: 24, 9: 26, 10: 28, 11: 23, 12: 25,
                       13: 27, 14: 5, 15: 2, 16: 8, 17: 7}
VISIBLE = 0.5  # BlazePose visibility below this: the point is treated as not seen

# The 70 OpenPose face points (dlib's 68 + two pupils) as face-mesh indices: jaw from the
# subject's right ear to the left, brows, nose bridge and base, eyes, outer and inner lips,
# then the iris centres of the refined mesh.
FACE_FROM_MESH = (
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,  # jaw (17)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # right brow, left brow
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose bridge, nose base
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # right eye, left eye
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips
    468, 473,  # pupils (iris centres)
)
assert len(FACE_FROM_MESH) == 70

MAX_PEOPLE = 4  # faces and hands looked for (BlazePose itself finds one body)


@dataclass
class Detection:
    """What was found in one photo, in pixels of it."""

    size: tuple[int, int]
    body: list[Point | None] | None = None  # 18 OpenPose points, None when no person was found
    hands: list[list[Point]] = field(default_factory=list)  # 21 points each
    faces: list[list[Point]] = field(default_factory=list)  # 70 points each
    notes: list[str] = field(default_factory=list)


def _pixels(landmarks, size: tuple[int, int]) -> list[Point]:
    w, h = size
    return [(lm.x * w, lm.y * h) for lm in landmarks]


def body_points(landmarks, size: tuple[int, int]) -> list[Point | None]:
    """18 OpenPose points from 33 BlazePose landmarks (None where unseen or outside the photo)."""
    w, h = size

    def point(i: int) -> Point | None:
        lm = landmarks[i]
        if lm.visibility < VISIBLE or not (0 <= lm.x <= 1 and 0 <= lm.y <= 1):
            return None
        return lm.x * w, lm.y * h

    out: list[Point | None] = [point(BODY_FROM_BLAZEPOSE[i]) if i != 1 else None for i in range(18)]
    right, left = out[2], out[5]
    if right is not None and left is not None:
        out[1] = ((right[0] + left[0]) / 2, (right[1] + left[1]) / 2)
    return out


def detect(image: Image.Image, body: bool = True, hands: bool = False, face: bool = False,
           field_name: str | None = None) -> Detection:
    """Run the detectors asked for on `image` (any mode: grayscale, RGBA and 16-bit too)."""
    mediapipe_models.require(field_name)
    size = image.size
    found = Detection(size)
    if body:
        result, _ = mediapipe_models.process("pose", image, static_image_mode=True, model_complexity=1)
        if result.pose_landmarks is not None:
            points = body_points(result.pose_landmarks.landmark, size)
            if any(p is not None for p in points):
                found.body = points
        if found.body is None:
            found.notes.append("no person's body was found in the picture")
    if hands:
        result, _ = mediapipe_models.process("hands", image, static_image_mode=True, max_num_hands=2 * MAX_PEOPLE)
        found.hands = [_pixels(h.landmark, size) for h in result.multi_hand_landmarks or []]
        if not found.hands:
            found.notes.append("no hands were found in the picture")
    if face:
        result, _ = mediapipe_models.process("face_mesh", image, static_image_mode=True, refine_landmarks=True,
                                             max_num_faces=MAX_PEOPLE)
        for mesh in result.multi_face_landmarks or []:
            points = _pixels(mesh.landmark, size)
            found.faces.append([points[i] for i in FACE_FROM_MESH])
        if not found.faces:
            found.notes.append("no face was found in the picture")
    return found


def pose_from_photo(image: Image.Image, name: str = "", field_name: str = "image") -> dict:
    """A pose-library entry (``aspect`` and 18 ``keypoints`` in 0..1 of the photo, ``null`` for
    points not seen) of the person in `image`; a UserError when there is none."""
    found = detect(image, field_name=field_name)
    if found.body is None or sum(p is not None for p in found.body) < 4:
        raise UserError("no person was found in the photo (the whole body or at least head and shoulders "
                        "should be visible)", field=field_name)
    w, h = found.size
    keypoints = [None if p is None else [round(p[0] / w, 4), round(p[1] / h, 4)] for p in found.body]
    return {"name": name, "description": "detected from a photo", "aspect": round(w / h, 4), "keypoints": keypoints}
