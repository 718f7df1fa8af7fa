"""OpenPose maps as ControlNet OpenPose models were trained on them (the drawing of the original
OpenPose / controlnet_aux): black background; the body's 17 limbs and 18 points in the
standard colours (:mod:`webui.imaging.poses`); each hand's 20 bones in HSV rainbow colours with
blue points; face points as white dots.

Points are pixels of a `size` (width, height) picture; the map is drawn at `out_size` with that
picture fitted inside keeping its proportions, as library poses are rendered.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
from PIL import Image

from .poses import Pose, render_pose

Point = tuple[float, float]

# The 20 bones of a hand between its 21 points (wrist 0; thumb 1-4; index 5-8; ... little 17-20).
HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)
HAND_COLOURS = tuple(tuple(round(c * 255) for c in colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0))
                     for i in range(len(HAND_EDGES)))
HAND_POINT = (0, 0, 255)  # blue
FACE_POINT = (255, 255, 255)


def _fit(size: tuple[int, int], out_size: tuple[int, int]):
    """Pixels of the `size` picture -> pixels of the `out_size` map (fitted, centred)."""
    w, h = size
    ow, oh = out_size
    scale = min(ow / w, oh / h)
    ox, oy = (ow - w * scale) / 2, (oh - h * scale) / 2
    return lambda p: (round(ox + p[0] * scale), round(oy + p[1] * scale))


def _sizes(out_size: tuple[int, int]) -> tuple[int, int]:
    """Line width and dot radius: OpenPose's 2 px lines and 4 px dots at 512, at least 1."""
    short = min(out_size)
    return max(1, round(short / 256)), max(1, round(short / 128))


def draw_bodies(bodies, size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """The skeletons of 18-point bodies (None for unseen points) as an H x W x 3 array."""
    w, h = size
    canvas = np.zeros((out_size[1], out_size[0], 3), np.uint8)
    for kps in bodies:
        norm = tuple(None if p is None else (p[0] / w, p[1] / h) for p in kps)
        canvas = np.maximum(canvas, np.asarray(render_pose(Pose("detected", "detected", "", w / h, norm), *out_size)))
    return canvas


def draw_hands(canvas: np.ndarray, hands, size: tuple[int, int]) -> np.ndarray:
    to = _fit(size, (canvas.shape[1], canvas.shape[0]))
    line, dot = _sizes((canvas.shape[1], canvas.shape[0]))
    for points in hands:
        pts = [to(p) for p in points]
        for (a, b), colour in zip(HAND_EDGES, HAND_COLOURS):
            cv2.line(canvas, pts[a], pts[b], colour, thickness=line)
        for p in pts:
            cv2.circle(canvas, p, dot, HAND_POINT, thickness=-1)
    return canvas


def draw_faces(canvas: np.ndarray, faces, size: tuple[int, int]) -> np.ndarray:
    to = _fit(size, (canvas.shape[1], canvas.shape[0]))
    dot = max(1, round(min(canvas.shape[:2]) / 170))  # OpenPose's 3 px at 512
    for points in faces:
        for p in points:
            cv2.circle(canvas, to(p), dot, FACE_POINT, thickness=-1)
    return canvas


def draw_openpose(size: tuple[int, int], out_size: tuple[int, int], bodies=(), hands=(), faces=()) -> Image.Image:
    """One OpenPose map: bodies first, then hands and faces on top (the reference order)."""
    canvas = draw_bodies(bodies, size, out_size)
    canvas = draw_hands(canvas, hands, size)
    canvas = draw_faces(canvas, faces, size)
    return Image.fromarray(canvas)
