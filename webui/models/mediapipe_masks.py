"""Inpaint masks found in the picture by MediaPipe's shipped models (the request's
``mask_preset``): ``"face"`` (the face-mesh ovals of every face), ``"person"`` (selfie
segmentation), ``"background"`` (everything but the person) and ``"hands"`` (the convex hull of
each hand's 21 landmarks, grown a little). White = repaint, as in a drawn mask.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageOps

from webui.errors import UserError
from webui.imaging.images import to_mask
from webui.models import mediapipe_models as mpm
from webui.models.mediapipe_faces import MediaPipeFaceDetector
from webui.request.generation import MASK_PRESETS

FIELD = "mask_preset"
FACE_GROW = 0.06      # face ovals scaled by 1 + this about their centre (reach the hairline/jaw)
HAND_GROW = 0.15      # hand hulls dilated by this fraction of the hand's size
PERSON_THRESHOLD = 0.5


def _nothing_found(what: str, preset: str) -> UserError:
    return UserError(f"no {what} found for the mask preset '{preset}': choose another preset, or paint the mask "
                     "by hand", field=FIELD)


def face_mask(image: Image.Image, preset: str = "face") -> Image.Image:
    det = MediaPipeFaceDetector()
    mask = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(mask)
    for box in det.detect(image):
        points = det.face_outline(image, box)
        if points:
            pts = np.asarray(points)
            centre = pts.mean(axis=0)
            draw.polygon([(float(x), float(y)) for x, y in centre + (pts - centre) * (1 + FACE_GROW)], fill=255)
        else:  # the mesh missed a face the detector found: its box's ellipse
            draw.ellipse((box.x, box.y, box.x + box.w - 1, box.y + box.h - 1), fill=255)
    if mask.getbbox() is None:
        raise _nothing_found("face", preset)
    return mask


def person_mask(image: Image.Image, preset: str = "person") -> Image.Image:
    # model 0 ("general", 256x256 input) suits portraits and full figures alike
    result, _scale = mpm.process("selfie_segmentation", image, model_selection=0)
    seg = result.segmentation_mask
    if seg is None:
        raise _nothing_found("person", preset)
    small = Image.fromarray(((np.asarray(seg) > PERSON_THRESHOLD) * 255).astype(np.uint8), "L")
    mask = small.resize(image.size, Image.BILINEAR).point(lambda v: 255 if v >= 128 else 0)
    if mask.getbbox() is None:
        raise _nothing_found("person", preset)
    return mask


def hands_mask(image: Image.Image, preset: str = "hands") -> Image.Image:
    result, _scale = mpm.process("hands", image, static_image_mode=True, max_num_hands=4,
                                 min_detection_confidence=0.5)
    W, H = image.size
    canvas = np.zeros((H, W), np.uint8)
    for hand in result.multi_hand_landmarks or []:
        pts = np.array([(lm.x * W, lm.y * H) for lm in hand.landmark], dtype=np.float32)
        hull = cv2.convexHull(pts).astype(np.int32)
        one = np.zeros_like(canvas)
        cv2.fillConvexPoly(one, hull, 255)
        size = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
        r = max(1, int(round(size * HAND_GROW)))
        one = cv2.dilate(one, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        canvas = np.maximum(canvas, one)
    if not canvas.any():
        raise _nothing_found("hand", preset)
    return Image.fromarray(canvas, "L")


def auto_mask(image: Image.Image, preset: str) -> Image.Image:
    """The 'L' mask (white = repaint, same size as ``image``) that ``preset`` finds in ``image``.
    Finding nothing, an unknown preset or a missing mediapipe wheel is a UserError on
    ``mask_preset``."""
    if preset not in MASK_PRESETS:
        raise UserError(f"mask_preset must be one of {', '.join(MASK_PRESETS)}; got {preset!r}", field=FIELD)
    mpm.require(FIELD)
    if preset == "face":
        return face_mask(image, preset)
    if preset == "hands":
        return hands_mask(image, preset)
    person = person_mask(image, preset)
    if preset == "person":
        return person
    background = ImageOps.invert(person)
    if background.getbbox() is None:
        raise _nothing_found("background (the person fills the picture)", preset)
    return background


def preset_mask(image: Image.Image, preset: str, mask: Image.Image | None = None) -> Image.Image:
    """The request's mask with ``preset`` applied: the preset's mask, united with ``mask`` (a
    drawn or uploaded mask) when there is one."""
    found = auto_mask(image, preset)
    return found if mask is None else ImageChops.lighter(found, to_mask(mask).resize(found.size))
