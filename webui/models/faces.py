"""Face detection for the face-detail pass.

Detectors
---------
* ``"mediapipe"`` -- :class:`MediaPipeFaceDetector`, the default: MediaPipe's short- and
  full-range face detectors, trained weights inside the ``mediapipe`` wheel (no download), with
  face-mesh outlines for the mask. Where the wheel is missing, ``"mediapipe"`` falls back to
  ``"haar"`` and :func:`resolve_detector` says why.
* ``"haar"`` -- :class:`HaarFaceDetector`: OpenCV's bundled frontal and profile Haar cascades,
  no download needed. Good on clear, roughly frontal portraits; weaker on tilted or small faces.
* ``"yunet"`` -- :class:`YuNetFaceDetector`: OpenCV's YuNet CNN (``cv2.FaceDetectorYN``), much
  stronger. Needs the ``face_detection_yunet_*.onnx`` file from the OpenCV model zoo in
  ``<models>/face_detection/``.
* ``"yolo:<name>"`` -- :class:`UltralyticsFaceDetector`, only when the optional ``ultralytics``
  package is installed, for ``<models>/face_detection/<name>.pt`` face models.

All detectors return :class:`FaceBox` lists in the pixel coordinates of the image passed in.
The detectors themselves are in ``face_detectors.py``; this module picks one by name, lists
the usable ones, and selects faces and their crop regions from what a detector found.
"""

from __future__ import annotations

import fnmatch
import threading
from pathlib import Path
from typing import Sequence

from webui.models import mediapipe_models, model_files
from webui.errors import UserError
# FaceBox is re-exported: the detail pass and the tests take it from here with the rest.
from webui.models.face_detectors import (
    FACE_MODELS_SUBDIR,
    YUNET_URL_HINT,
    FaceBox,
    FaceDetector,
    HaarFaceDetector,
    UltralyticsFaceDetector,
    YuNetFaceDetector,
    ultralytics_available,
)
from webui.models.mediapipe_faces import MediaPipeFaceDetector
from webui.imaging.masks import Region, expand_to_aspect
from webui.request.face import ORDERS

__all__ = [
    "FaceBox",
    "DEFAULT_DETECTOR",
    "FALLBACK_DETECTOR",
    "ORDERS",
    "list_detectors",
    "make_detector",
    "select_faces",
    "face_crop_region",
]

DEFAULT_DETECTOR = "mediapipe"
FALLBACK_DETECTOR = "haar"  # used for "mediapipe" where the mediapipe wheel is missing
YUNET_GLOB = "face_detection_yunet_*.onnx"
#: Orders accepted by :func:`select_faces`.


# --------------------------------------------------------------------------- factory


_haar_lock = threading.Lock()
_haar_default: HaarFaceDetector | None = None


def _face_dir(models_dir: str | Path) -> Path:
    return Path(models_dir) / FACE_MODELS_SUBDIR


def _find_yunet(models_dir: str | Path) -> Path | None:
    files = [m.path for m in model_files.scan(_face_dir(models_dir), (".onnx",), recursive=False)
             if fnmatch.fnmatch(m.path.name, YUNET_GLOB)]
    return files[-1] if files else None  # newest release name sorts last (2022mar < 2023mar)


def _yolo_files(models_dir: str | Path) -> dict[str, Path]:
    return {m.stem: m.path for m in model_files.scan(_face_dir(models_dir), (".pt",), recursive=False)}


def list_detectors(models_dir: str | Path) -> list[str]:
    """Detector names usable now: ``"mediapipe"`` when its wheel is installed, ``"haar"``,
    ``"yunet"`` when its file is present, and ``"yolo:<stem>"`` for each ``.pt`` in the face
    folder when ultralytics is installed. The first one is the default."""
    names = [] if mediapipe_models.unavailable() else [DEFAULT_DETECTOR]
    names.append(FALLBACK_DETECTOR)
    if _find_yunet(models_dir) is not None:
        names.append("yunet")
    if ultralytics_available():
        names += [f"yolo:{stem}" for stem in _yolo_files(models_dir)]
    return names


def resolve_detector(name: str | None) -> tuple[str, str | None]:
    """The detector name that will run for ``name`` (None/"" = the default), and a note when it
    is not the one asked for: ``"mediapipe"`` without the mediapipe wheel runs ``"haar"``."""
    key = (name or DEFAULT_DETECTOR).strip()
    if key.lower() == DEFAULT_DETECTOR:
        why = mediapipe_models.unavailable()
        if why:
            return FALLBACK_DETECTOR, f"face detail: used the '{FALLBACK_DETECTOR}' detector because {why}"
        return DEFAULT_DETECTOR, None
    return key, None


def make_detector(
    name: str | None, models_dir: str | Path, confidence: float | None = None, device: str | None = None
) -> FaceDetector:
    """Build a detector by name (case-insensitive): ``"mediapipe"`` (default, also for
    None/""; ``"haar"`` where mediapipe is missing, see :func:`resolve_detector`), ``"haar"``,
    ``"yunet"``, or ``"yolo:<file stem>"``. ``confidence`` sets the MediaPipe/YuNet/YOLO threshold.

    A missing model file raises :class:`UserError` saying which file to put where.
    """
    key, _note = resolve_detector(name)
    low = key.lower()
    if low == DEFAULT_DETECTOR:
        return MediaPipeFaceDetector(confidence)
    if low in ("haar", "opencv", "opencv haar", "haar (opencv)"):
        global _haar_default
        with _haar_lock:
            if _haar_default is None:
                _haar_default = HaarFaceDetector()
            return _haar_default
    if low == "yunet":
        path = _find_yunet(models_dir)
        if path is None:
            raise UserError(
                f"The YuNet face detector needs face_detection_yunet_2023mar.onnx ({YUNET_URL_HINT}) in "
                f"models/{FACE_MODELS_SUBDIR}/ (found none in {_face_dir(models_dir)}). Put the file there "
                "or use the 'haar' detector."
            )
        return YuNetFaceDetector(path, score_threshold=0.6 if confidence is None else float(confidence))
    if low.startswith("yolo:"):
        stem = key.split(":", 1)[1].strip()
        if not ultralytics_available():
            raise UserError("YOLO face detection needs the optional 'ultralytics' package: pip install ultralytics.")
        files = _yolo_files(models_dir)
        if stem not in files:
            raise UserError(
                f"Face model '{stem}' not found: put {stem}.pt into models/{FACE_MODELS_SUBDIR}/ "
                f"(available: {', '.join(files) or 'none'})."
            )
        return UltralyticsFaceDetector(files[stem], confidence=0.3 if confidence is None else float(confidence), device=device)
    raise UserError(f"Unknown face detector {name!r}: use one of {', '.join(list_detectors(models_dir))}.")


# --------------------------------------------------------------------------- selection / regions


def select_faces(
    boxes: Sequence[FaceBox], max_faces: int | None = 0, min_confidence: float = 0.0, order: str = "largest"
) -> list[FaceBox]:
    """Drop faces under ``min_confidence``, keep the ``max_faces`` largest (0/None = all),
    and return them in ``order``: ``"largest"`` (default), ``"left-to-right"``,
    ``"right-to-left"``, ``"top-to-bottom"`` or ``"confidence"`` (highest first; with this
    order the ``max_faces`` kept are the most confident rather than the largest)."""
    if order not in ORDERS:
        raise UserError(f"Unknown face order {order!r}: use one of {', '.join(ORDERS)}.")
    if max_faces is not None and max_faces < 0:
        raise UserError(f"Max faces must be 0 (all) or more, got {max_faces}.")
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise UserError(f"Face confidence must be between 0 and 1, got {min_confidence}.")
    faces = [b for b in boxes if b.score >= min_confidence and b.area > 0]
    if order == "confidence":
        faces.sort(key=lambda b: (-b.score, -b.area, b.x, b.y))
    else:
        faces.sort(key=lambda b: (-b.area, b.x, b.y))
    if max_faces:
        faces = faces[: int(max_faces)]
    if order == "left-to-right":
        faces.sort(key=lambda b: (b.center[0], b.center[1]))
    elif order == "right-to-left":
        faces.sort(key=lambda b: (-b.center[0], b.center[1]))
    elif order == "top-to-bottom":
        faces.sort(key=lambda b: (b.center[1], b.center[0]))
    return faces


def face_crop_region(
    box: FaceBox | Sequence[int], image_size: Sequence[int], padding_px: int, target_aspect: float | None = 1.0
) -> Region:
    """Region ``(x0, y0, x1, y1)`` to crop around a face for the detail pass.

    The face box grown by ``padding_px`` on each side and clamped to the image, then
    enlarged to ``target_aspect`` (width / height of the model's native size, e.g. 1.0 for
    512x512; None = no adjustment) and shifted to stay inside the image. A face cut by the
    image border gives a smaller, valid region. ``box`` may be a :class:`FaceBox` or
    ``(x0, y0, x1, y1)``.
    """
    padding_px = int(padding_px)
    if padding_px < 0:
        raise UserError(f"Face padding must be 0 or more pixels, got {padding_px}.")
    if isinstance(box, FaceBox):
        x0, y0, x1, y1 = box.region
    else:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
    return expand_to_aspect((x0 - padding_px, y0 - padding_px, x1 + padding_px, y1 + padding_px), target_aspect, image_size)
