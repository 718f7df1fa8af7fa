"""Trained detectors that ship inside the `mediapipe` wheel: face detection, the 478-point face
mesh, 33-point body pose, 21-point hands and selfie (person) segmentation -- real weights with
no download.

Only `mediapipe==0.10.21` is used: later releases dropped these "solutions" models. It is
installed with `--no-deps` (its metadata asks for numpy<2 and opencv-contrib, neither needed;
its real needs are in requirements.txt). Where the wheel is missing (another Python, another
platform) the app still starts: `unavailable()` says why, and the options that need it say so.

MediaPipe's graphs are not thread-safe and cost ~100 ms to build: one instance per model,
built on first use and used under a lock. Images are converted to 8-bit RGB (grayscale, alpha
and 16-bit inputs too) and large ones scaled down for detection; results are mapped back.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from ..errors import UserError

VERSION = "0.10.21"
MAX_SIDE = 1280  # detection runs at most at this size; coordinates are mapped back

_lock = threading.Lock()
_solutions: dict[tuple, object] = {}


def unavailable() -> str | None:
    """None when the detectors can run, else a sentence saying why not and how to fix it."""
    try:
        import mediapipe  # noqa: F401
        from mediapipe.python import solutions  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means: not usable here
        return (f"the MediaPipe detectors need the package mediapipe=={VERSION} "
                f"(`pip install --no-deps mediapipe=={VERSION}`; not available here: {str(e)[:120]})")
    return None


def require(field: str | None = None) -> None:
    why = unavailable()
    if why:
        raise UserError(why[0].upper() + why[1:], field=field)


def rgb_array(image: Image.Image, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """(H x W x 3 uint8 RGB array, scale) with scale = array size / image size (<= 1)."""
    img = image
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit: scale the range to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max()
        if top > 255:
            arr = arr * (255.0 / top)
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "P"):
        rgba = img.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(back, rgba)
    img = img.convert("RGB")
    scale = min(1.0, max_side / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8)), scale


def solution(kind: str, **options):
    """The MediaPipe solution object `kind` ("face_detection", "face_mesh", "pose", "hands",
    "selfie_segmentation") with `options`, built once. Use it under `locked()`."""
    require()
    key = (kind, tuple(sorted(options.items())))
    with _lock:
        if key not in _solutions:
            from mediapipe.python import solutions

            module = getattr(solutions, kind)
            cls = {"face_detection": "FaceDetection", "face_mesh": "FaceMesh", "pose": "Pose", "hands": "Hands",
                   "selfie_segmentation": "SelfieSegmentation"}[kind]
            _solutions[key] = getattr(module, cls)(**options)
        return _solutions[key]


def locked():
    """The lock every use of a solution object holds (graphs are not thread-safe)."""
    return _lock


def process(kind: str, image: Image.Image, max_side: int = MAX_SIDE, **options):
    """Run solution `kind` on `image`: (MediaPipe result, scale of the array it saw)."""
    arr, scale = rgb_array(image, max_side)
    sol = solution(kind, **options)
    with _lock:
        return sol.process(arr), scale
