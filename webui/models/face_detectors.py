"""The face detectors behind the face-detail pass, each returning :class:`FaceBox` lists in
the pixel coordinates of the image passed in: OpenCV's bundled Haar cascades (no download),
OpenCV's YuNet CNN (an ``.onnx`` file from the OpenCV model zoo) and, when the optional
``ultralytics`` package is installed, YOLO face models. Choosing one by name, and picking
faces from what they find, is ``faces.py``'s job.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import cv2
import numpy as np
from PIL import Image

from webui.errors import UserError
from webui.imaging.masks import Region

#: Sub-folder of the models directory holding optional face detector files.
FACE_MODELS_SUBDIR = "face_detection"
YUNET_URL_HINT = "https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet"


@dataclass(frozen=True)
class FaceBox:
    """A detected face: top-left corner, size in pixels, and a confidence in [0, 1]."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    @property
    def area(self) -> int:
        return max(0, self.w) * max(0, self.h)

    @property
    def region(self) -> Region:
        """``(x0, y0, x1, y1)``, end exclusive."""
        return self.x, self.y, self.x + self.w, self.y + self.h

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2.0, self.y + self.h / 2.0

    def intersection(self, other: "FaceBox") -> int:
        iw = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        ih = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        return max(0, iw) * max(0, ih)

    def iou(self, other: "FaceBox") -> float:
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def scaled(self, factor: float) -> "FaceBox":
        return FaceBox(
            int(round(self.x * factor)),
            int(round(self.y * factor)),
            int(round(self.w * factor)),
            int(round(self.h * factor)),
            self.score,
        )


@runtime_checkable
class FaceDetector(Protocol):
    def detect(self, image: Image.Image) -> list[FaceBox]: ...


# --------------------------------------------------------------------------- helpers


def _to_rgb_array(image: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    """RGB uint8 array, downscaled so its longer side is at most ``max_side``; returns the
    factor that maps detector coordinates back to the original image."""
    img = image.convert("RGB")
    w, h = img.size
    factor = 1.0
    if max(w, h) > max_side:
        s = max_side / max(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
        factor = w / img.size[0]
    return np.asarray(img), factor


def _clip_box(box: FaceBox, size: tuple[int, int]) -> FaceBox | None:
    W, H = size
    x0, y0 = max(0, box.x), max(0, box.y)
    x1, y1 = min(W, box.x + box.w), min(H, box.y + box.h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return FaceBox(x0, y0, x1 - x0, y1 - y0, box.score)


def _merge_boxes(boxes: Sequence[FaceBox], iou_thr: float = 0.3, contain_thr: float = 0.6) -> list[FaceBox]:
    """Greedy suppression: keep the best box of each overlapping group.

    Two boxes are one face when their IoU is over ``iou_thr`` or when the smaller one lies
    mostly (``contain_thr`` of its area) inside the other. Boxes earlier in ``boxes`` win
    ties, so pass the preferred source first.
    """
    order = sorted(range(len(boxes)), key=lambda i: (-boxes[i].score, i))
    kept: list[FaceBox] = []
    for i in order:
        b = boxes[i]
        dup = False
        for k in kept:
            inter = b.intersection(k)
            small = min(b.area, k.area)
            if b.iou(k) > iou_thr or (small > 0 and inter / small > contain_thr):
                dup = True
                break
        if not dup:
            kept.append(b)
    return kept


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, v))))


# --------------------------------------------------------------------------- Haar


class HaarFaceDetector:
    """OpenCV Haar cascades: frontal + profile (both directions), merged.

    Detection runs on a grey, histogram-equalised copy whose longer side is at most
    ``max_side`` pixels. ``min_face_frac`` sets the smallest face as a fraction of the
    shorter image side. The score is a logistic squash of the cascade's last-stage weight
    (``detectMultiScale3`` ``levelWeights``): a relative measure, not a calibrated probability
    -- frontal hits usually score 0.8-1, profile-only hits lower.
    """

    name = "haar"

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_face_frac: float = 0.05,
        max_side: int = 1024,
        use_profile: bool = True,
    ):
        base = Path(cv2.data.haarcascades)
        self._frontal = self._load(base / "haarcascade_frontalface_default.xml")
        self._profile = self._load(base / "haarcascade_profileface.xml") if use_profile else None
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face_frac = min_face_frac
        self.max_side = max_side
        self._lock = threading.Lock()  # CascadeClassifier is not documented as thread-safe

    @staticmethod
    def _load(path: Path) -> cv2.CascadeClassifier:
        clf = cv2.CascadeClassifier(str(path))
        if clf.empty():
            raise RuntimeError(f"OpenCV could not load its bundled cascade {path.name}")
        return clf

    def _run(self, clf: cv2.CascadeClassifier, gray: np.ndarray, min_size: int) -> list[FaceBox]:
        try:
            rects, _levels, weights = clf.detectMultiScale3(
                gray,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(min_size, min_size),
                outputRejectLevels=True,
            )
            weights = np.asarray(weights, dtype=np.float64).ravel()
        except cv2.error:
            rects = clf.detectMultiScale(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_size, min_size)
            )
            weights = np.array([])
        out = []
        for i, (x, y, w, h) in enumerate(np.asarray(rects, dtype=np.int64).reshape(-1, 4)):
            score = _sigmoid(float(weights[i]) / 4.0) if i < weights.size else 1.0
            out.append(FaceBox(int(x), int(y), int(w), int(h), score))
        return out

    def detect(self, image: Image.Image) -> list[FaceBox]:
        rgb, factor = _to_rgb_array(image, self.max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        gh, gw = gray.shape
        min_size = max(20, int(round(min(gw, gh) * self.min_face_frac)))
        if min(gw, gh) < min_size:
            return []
        with self._lock:
            boxes = self._run(self._frontal, gray, min_size)
            if self._profile is not None:
                boxes += self._run(self._profile, gray, min_size)
                flipped = np.ascontiguousarray(gray[:, ::-1])
                for b in self._run(self._profile, flipped, min_size):
                    boxes.append(FaceBox(gw - b.x - b.w, b.y, b.w, b.h, b.score))
        merged = _merge_boxes(boxes)
        out = []
        for b in merged:
            c = _clip_box(b.scaled(factor), image.size)
            if c is not None:
                out.append(c)
        return out


# --------------------------------------------------------------------------- YuNet


class YuNetFaceDetector:
    """OpenCV's YuNet face detector (``cv2.FaceDetectorYN``) from a ``.onnx`` file.

    ``score_threshold`` drops weak detections; results carry YuNet's confidence (0-1).
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | Path,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_side: int = 1280,
    ):
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise UserError(
                f"YuNet model file {self.model_path.name} not found: put face_detection_yunet_2023mar.onnx "
                f"({YUNET_URL_HINT}) into the models/{FACE_MODELS_SUBDIR} folder."
            )
        if not hasattr(cv2, "FaceDetectorYN"):
            raise UserError("This OpenCV build has no FaceDetectorYN; install opencv-python-headless 4.8 or newer.")
        self.max_side = max_side
        try:
            self._det = cv2.FaceDetectorYN.create(
                str(self.model_path), "", (320, 320), float(score_threshold), float(nms_threshold), int(top_k)
            )
        except cv2.error as e:
            raise UserError(
                f"{self.model_path.name} is not a YuNet ONNX model OpenCV can load "
                f"({str(e).strip().splitlines()[-1] if str(e).strip() else 'unknown error'})."
            ) from None
        self._lock = threading.Lock()

    def detect(self, image: Image.Image) -> list[FaceBox]:
        rgb, factor = _to_rgb_array(image, self.max_side)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        h, w = bgr.shape[:2]
        with self._lock:
            self._det.setInputSize((w, h))
            _, faces = self._det.detect(bgr)
        out = []
        if faces is not None:
            for row in np.asarray(faces).reshape(-1, 15):
                x, y, bw, bh = (float(v) for v in row[:4])
                b = FaceBox(int(round(x)), int(round(y)), int(round(bw)), int(round(bh)), float(row[14]))
                c = _clip_box(b.scaled(factor), image.size)
                if c is not None:
                    out.append(c)
        return out


# --------------------------------------------------------------------------- Ultralytics (optional)


def ultralytics_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ultralytics") is not None


class UltralyticsFaceDetector:
    """A YOLO face model through the optional ``ultralytics`` package (not a requirement).

    Note: ultralytics loads ``.pt`` files with full pickle, which can run code embedded in
    the file; only use model files from a source you trust.
    """

    name = "yolo"

    def __init__(self, model_path: str | Path, confidence: float = 0.3, device: str | None = None):
        if not ultralytics_available():
            raise UserError("YOLO face detection needs the optional 'ultralytics' package: pip install ultralytics.")
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise UserError(f"Face model {self.model_path.name} not found in models/{FACE_MODELS_SUBDIR}.")
        from ultralytics import YOLO  # type: ignore[import-not-found]

        try:
            self._model = YOLO(str(self.model_path))
        except Exception as e:  # noqa: BLE001 - any load failure is a bad user file
            raise UserError(f"{self.model_path.name} is not a YOLO model ultralytics can load ({e}).") from None
        self.confidence = float(confidence)
        self.device = device
        self._lock = threading.Lock()

    def detect(self, image: Image.Image) -> list[FaceBox]:
        kwargs = {"conf": self.confidence, "verbose": False}
        if self.device:
            kwargs["device"] = self.device
        with self._lock:
            results = self._model.predict(image.convert("RGB"), **kwargs)
        out = []
        for r in results:
            if r.boxes is None:
                continue
            xyxy = r.boxes.xyxy.cpu().numpy()
            conf = r.boxes.conf.cpu().numpy()
            for (x0, y0, x1, y1), s in zip(xyxy, conf):
                b = FaceBox(int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0)), float(s))
                c = _clip_box(b, image.size)
                if c is not None:
                    out.append(c)
        return out

