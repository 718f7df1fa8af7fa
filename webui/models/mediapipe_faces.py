"""MediaPipe's face detector and face-mesh outlines (the ``"mediapipe"`` face detector, the
default where the wheel is installed; see mediapipe_models.py).

Detection runs both shipped BlazeFace models -- short range (``model_selection=0``, faces that
fill a good part of the picture) and full range (``1``, small and distant faces) -- and merges
what they find. The graphs report only faces scoring 0.5 or more; a stricter ``confidence`` is
applied to what they report (one graph per model, whatever the confidence). Measured on
scikit-image's LFW subset (25 px crops upscaled to 128 px): 98 of 100 faces found, 1 false
alarm on the 100 non-faces.

:meth:`MediaPipeFaceDetector.face_outline` runs the 478-point face mesh on a crop around one
box and returns the face oval (``FACEMESH_FACE_OVAL``) as a polygon in picture coordinates:
the face pass masks the face itself rather than an ellipse of its box.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image

from webui.models import mediapipe_models as mpm
from webui.models.face_detectors import FaceBox, _clip_box, _merge_boxes

MIN_SCORE = 0.5     # what the BlazeFace graphs report at the least
MESH_CONTEXT = 0.6  # the mesh crop is the face box grown by this fraction on each side
MESH_MIN_SIDE = 256  # small crops are enlarged to this for the mesh


@lru_cache(maxsize=1)
def oval_indices() -> tuple[int, ...]:
    """The face-oval landmark indices in order around the face (FACEMESH_FACE_OVAL is a set of
    edges of one closed loop)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL

    nxt = dict(FACEMESH_FACE_OVAL)
    start = min(nxt)
    loop = [start]
    while nxt[loop[-1]] != start and len(loop) <= len(nxt):
        loop.append(nxt[loop[-1]])
    return tuple(loop)


class MediaPipeFaceDetector:
    """Faces from MediaPipe's short- and full-range detectors; outlines from the face mesh."""

    name = "mediapipe"

    def __init__(self, confidence: float | None = None, max_side: int = mpm.MAX_SIDE):
        mpm.require("face_detail_detector")
        self.confidence = max(MIN_SCORE, float(confidence or 0.0))
        self.max_side = max_side

    def detect(self, image: Image.Image) -> list[FaceBox]:
        W, H = image.size
        boxes: list[FaceBox] = []
        for model in (0, 1):  # short range first: it wins ties when both find a face
            result, _scale = mpm.process("face_detection", image, self.max_side, model_selection=model,
                                         min_detection_confidence=MIN_SCORE)
            for d in result.detections or []:
                if float(d.score[0]) < self.confidence:
                    continue
                rb = d.location_data.relative_bounding_box
                box = FaceBox(int(round(rb.xmin * W)), int(round(rb.ymin * H)), int(round(rb.width * W)),
                              int(round(rb.height * H)), float(d.score[0]))
                clipped = _clip_box(box, image.size)
                if clipped is not None:
                    boxes.append(clipped)
        return _merge_boxes(boxes)

    def face_outline(self, image: Image.Image, box: FaceBox) -> list[tuple[float, float]] | None:
        """The face oval of the face in ``box`` as (x, y) points in ``image``'s pixels; None when
        the mesh finds no face there."""
        gx, gy = box.w * MESH_CONTEXT, box.h * MESH_CONTEXT
        x0, y0 = max(0, int(box.x - gx)), max(0, int(box.y - gy))
        x1, y1 = min(image.width, int(box.x + box.w + gx)), min(image.height, int(box.y + box.h + gy))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        crop = image.crop((x0, y0, x1, y1))
        if max(crop.size) < MESH_MIN_SIDE:
            f = MESH_MIN_SIDE / max(crop.size)
            crop = mpm_rgb(crop).resize((round(crop.width * f), round(crop.height * f)), Image.BICUBIC)
        result, _scale = mpm.process("face_mesh", crop, self.max_side, static_image_mode=True, max_num_faces=3,
                                     refine_landmarks=False, min_detection_confidence=0.3)
        faces = result.multi_face_landmarks or []
        if not faces:
            return None
        cw, ch = x1 - x0, y1 - y0
        cx, cy = box.center

        def points(face):
            lm = face.landmark
            return [(x0 + lm[i].x * cw, y0 + lm[i].y * ch) for i in oval_indices()]

        def distance(pts):
            mx = sum(p[0] for p in pts) / len(pts)
            my = sum(p[1] for p in pts) / len(pts)
            return (mx - cx) ** 2 + (my - cy) ** 2

        return min((points(f) for f in faces), key=distance)


def mpm_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, the way the detectors see it (alpha on white, 16-bit scaled)."""
    arr, _ = mpm.rgb_array(image, max(image.size))
    return Image.fromarray(arr)
