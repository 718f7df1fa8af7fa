"""The pose library: OpenPose body keypoints in ``presets/poses/*.json``, rendered to the
skeleton image an OpenPose ControlNet expects.

A pose file holds ``name``, ``description``, ``aspect`` (width / height of the frame the points
were placed in) and ``keypoints``: 18 ``[x, y]`` pairs in 0..1 of that frame, in the OpenPose
COCO order below, ``null`` for a point that is not visible. Rendering fits the frame into any
canvas keeping its proportions (black bands where aspects differ) and draws the standard
OpenPose limb colours, so the result looks like what the OpenPose preprocessor produces.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

POSES_DIR = Path(__file__).resolve().parents[2] / "presets" / "poses"

KEYPOINTS = (
    "nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder", "left elbow",
    "left wrist", "right hip", "right knee", "right ankle", "left hip", "left knee", "left ankle",
    "right eye", "left eye", "right ear", "left ear",
)
# Limbs as keypoint index pairs, in the order (and so with the colours) OpenPose draws them.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)


class PoseError(ValueError):
    """A pose file that cannot be used at all (the message names the file)."""


@dataclass(frozen=True)
class Pose:
    key: str  # file stem, the stable id stored in requests and infotext
    name: str
    description: str
    aspect: float
    keypoints: tuple[tuple[float, float] | None, ...]

    @property
    def missing(self) -> list[str]:
        return [KEYPOINTS[i] for i, p in enumerate(self.keypoints) if p is None]

    @property
    def drawable_limbs(self) -> int:
        return sum(1 for a, b in LIMBS if self.keypoints[a] is not None and self.keypoints[b] is not None)


def parse_pose(data, key: str) -> tuple[Pose, list[str]]:
    """A Pose plus notes on what is missing or was dropped; PoseError when nothing is usable."""
    label = f"{key}.json"
    if not isinstance(data, dict):
        raise PoseError(f"{label}: expected a JSON object with 'keypoints'")
    points = data.get("keypoints")
    if not isinstance(points, list):
        raise PoseError(f"{label}: 'keypoints' must be a list of [x, y] pairs or null")
    notes = []
    if len(points) != len(KEYPOINTS):
        notes.append(f"{label}: {len(points)} keypoints instead of {len(KEYPOINTS)}; extra ones ignored, "
                     "absent ones treated as missing")
    kps: list[tuple[float, float] | None] = []
    for i in range(len(KEYPOINTS)):
        p = points[i] if i < len(points) else None
        ok = (isinstance(p, (list, tuple)) and len(p) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p))
        if p is not None and not ok:
            notes.append(f"{label}: {KEYPOINTS[i]} is not an [x, y] pair of numbers; treated as missing")
        kps.append((float(p[0]), float(p[1])) if ok else None)
    if not any(kps):
        raise PoseError(f"{label}: no usable keypoints")
    aspect = data.get("aspect", 1.0)
    if not isinstance(aspect, (int, float)) or isinstance(aspect, bool) or not 0.1 <= aspect <= 10:
        notes.append(f"{label}: 'aspect' must be a number between 0.1 and 10; using 1.0")
        aspect = 1.0
    pose = Pose(key, str(data.get("name") or key), str(data.get("description") or ""), float(aspect), tuple(kps))
    return pose, notes


def load_pose_file(path: str | Path) -> tuple[Pose, list[str]]:
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError) as e:
        raise PoseError(f"{path.name}: cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise PoseError(f"{path.name}: not valid JSON: {e.msg} at line {e.lineno}") from None
    return parse_pose(data, path.stem)


def load_poses(directory: str | Path | None = None) -> tuple[dict[str, Pose], list[str]]:
    """Every pose in the folder by key, plus problems (bad files by name, missing points)."""
    folder = Path(directory) if directory is not None else POSES_DIR
    poses: dict[str, Pose] = {}
    problems: list[str] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            pose, notes = load_pose_file(path)
        except PoseError as e:
            problems.append(f"{e} (pose skipped)")
            continue
        poses[pose.key] = pose
        problems += notes
    return poses, problems


def render_pose(pose: Pose, width: int, height: int) -> Image.Image:
    """The OpenPose skeleton on black at width x height; the pose frame is fitted inside the
    canvas with its proportions kept. Missing points and the limbs touching them are skipped."""
    canvas = np.zeros((height, width, 3), np.uint8)
    scale = min(width / pose.aspect, height)  # pixel size of one frame-height unit
    fw, fh = pose.aspect * scale, scale
    ox, oy = (width - fw) / 2, (height - fh) / 2
    pts = [None if p is None else (ox + p[0] * fw, oy + p[1] * fh) for p in pose.keypoints]
    # Line and dot sizes follow the canvas (OpenPose's 4 px at 512) so small maps still show limbs.
    stick = max(1, round(min(width, height) / 128))
    for (a, b), colour in zip(LIMBS, COLOURS):
        if pts[a] is None or pts[b] is None:
            continue
        (x0, y0), (x1, y1) = pts[a], pts[b]
        length = math.hypot(x1 - x0, y1 - y0)
        angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
        poly = cv2.ellipse2Poly((round((x0 + x1) / 2), round((y0 + y1) / 2)), (max(1, round(length / 2)), stick),
                                round(angle), 0, 360, 1)
        layer = canvas.copy()
        cv2.fillConvexPoly(layer, poly, [int(c * 0.6) for c in colour])
        canvas = np.maximum(canvas, layer)  # limbs keep their own colour where they cross
    for p, colour in zip(pts, COLOURS):
        if p is not None:
            cv2.circle(canvas, (round(p[0]), round(p[1])), stick, colour, thickness=-1)
    return Image.fromarray(canvas)


def render_by_key(key: str, width: int, height: int, directory: str | Path | None = None) -> Image.Image:
    """The skeleton of a library pose (UserError naming the pose when it is not there)."""
    from ..errors import UserError

    folder = Path(directory) if directory is not None else POSES_DIR
    path = folder / f"{Path(key).name}.json"
    if not path.is_file():
        raise UserError(f"pose {key!r} is not in the pose library ({folder.name}/)", field="controlnet_units")
    try:
        pose, _ = load_pose_file(path)
    except PoseError as e:
        raise UserError(str(e), field="controlnet_units") from None
    return render_pose(pose, width, height)


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,63}$")


def pose_key(name) -> str:
    """The library key (file stem) for a pose name: letters, digits, spaces, '_' and '-', at
    most 64; a UserError for anything else (a path, dots, an empty name)."""
    from ..errors import UserError

    text = name.strip() if isinstance(name, str) else ""
    if not NAME.match(text):
        raise UserError("a pose name is 1 to 64 letters, digits, spaces, '_' or '-' (no paths or dots); "
                        f"got {str(name)[:80]!r}", field="pose_name")
    return text.replace(" ", "_")


def save_pose(name: str, data: dict, directory: str | Path | None = None) -> Pose:
    """Add a pose (the library's JSON form) under `name`, written whole or not at all; a UserError
    when the name is bad or taken, or the pose has no usable points."""
    from ..atomic_files import write_new
    from ..errors import UserError

    key = pose_key(name)
    try:
        pose, _ = parse_pose(data, key)
    except PoseError as e:
        raise UserError(str(e), field="pose") from None
    entry = {"name": name.strip(), "description": pose.description[:200], "aspect": pose.aspect,
             "keypoints": [None if p is None else list(p) for p in pose.keypoints]}
    folder = Path(directory) if directory is not None else POSES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    try:
        write_new(folder / f"{key}.json", (json.dumps(entry, indent=1) + "\n").encode("utf-8"))
    except FileExistsError:
        raise UserError(f"a pose named {key!r} is already in the pose library; choose another name",
                        field="pose_name") from None
    return pose
