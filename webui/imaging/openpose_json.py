"""OpenPose JSON (what OpenPose and the ControlNet extension's pose editor write) -> an OpenPose map.

One pose is ``{"people": [{"pose_keypoints_2d": [x, y, c, ...18 points],
"hand_left_keypoints_2d": [...21], "hand_right_keypoints_2d": [...21], "face_keypoints_2d": [...]}],
"canvas_width": W, "canvas_height": H}``. Points are pixels of the canvas, or 0..1 fractions of it
when no coordinate is above 1; a point with confidence 0 (or at 0, 0) is unseen. A hand is drawn
only when all its 21 points are seen.
"""

from __future__ import annotations

from PIL import Image

from ..errors import UserError
from ..validate import number
from .openpose_draw import draw_openpose

MAX_CANVAS = 2048
MAX_PEOPLE = 64
FIELD = "body"


def _points(flat, what: str, count: int | None = None) -> list[tuple[float, float] | None]:
    if flat is None:
        return []
    if not isinstance(flat, list) or len(flat) % 3 or len(flat) > 3 * 100:
        raise UserError(f"{what} must be a list of x, y, confidence triples", field=FIELD)
    pts = []
    for i in range(0, len(flat), 3):
        x, y, c = (number(v, what, FIELD) for v in flat[i:i + 3])
        pts.append(None if c <= 0 or (x == 0 and y == 0) else (x, y))
    if count is not None and pts and len(pts) != count:
        raise UserError(f"{what} must hold {count} points, got {len(pts)}", field=FIELD)
    return pts


def render_openpose_json(pose, n: int = 0) -> Image.Image:
    """The OpenPose map of one pose object, at its canvas size."""
    where = f"pose {n}"
    if not isinstance(pose, dict):
        raise UserError(f"{where} must be an object with people, canvas_width and canvas_height", field=FIELD)
    w = int(number(pose.get("canvas_width", 512), f"{where}: canvas_width", FIELD, 64, MAX_CANVAS, integer=True))
    h = int(number(pose.get("canvas_height", 512), f"{where}: canvas_height", FIELD, 64, MAX_CANVAS, integer=True))
    people = pose.get("people") or []
    if not isinstance(people, list) or len(people) > MAX_PEOPLE:
        raise UserError(f"{where}: people must be a list of at most {MAX_PEOPLE} people", field=FIELD)
    bodies, hands, faces = [], [], []
    for i, person in enumerate(people):
        if not isinstance(person, dict):
            raise UserError(f"{where}: person {i} must be an object", field=FIELD)
        body = _points(person.get("pose_keypoints_2d"), f"{where}: person {i} pose_keypoints_2d", 18)
        if body:
            bodies.append(body)
        for side in ("left", "right"):
            hand = _points(person.get(f"hand_{side}_keypoints_2d"), f"{where}: person {i} hand_{side}", 21)
            if hand and all(p is not None for p in hand):
                hands.append(hand)
        face = [p for p in _points(person.get("face_keypoints_2d"), f"{where}: person {i} face") if p is not None]
        if face:
            faces.append(face)
    seen = [c for group in (bodies, hands, faces) for pts in group for p in pts if p is not None for c in p]
    if seen and max(seen) <= 1.0:  # fractions of the canvas
        scale = lambda pts: [None if p is None else (p[0] * w, p[1] * h) for p in pts]  # noqa: E731
        bodies, hands, faces = ([scale(p) for p in g] for g in (bodies, hands, faces))
    return draw_openpose((w, h), (w, h), bodies, hands, faces)


__all__ = ["render_openpose_json"]
