"""Finding faces and turning them into 128-d embeddings with dlib.

Detection is dlib's HOG detector (the default), dlib's CNN (MMOD) detector, or OpenCV's Haar
cascade. Each box is aligned with dlib's 5-point landmark model into a 150x150 chip (eyes and
nose at fixed places) that dlib's ResNet encoder turns into the embedding. Test-time flip
(averaging with the mirror image's embedding) is implemented and measured by ``evaluate``, but
off: on ORL validation people it gained nothing for twice the encoding time. Models come from the
``face-recognition-models`` package and are loaded once per thread, because a dlib network is
not safe to share between threads; the encoder releases the GIL, so several threads encode in
parallel.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from course_tools.base import ToolInputError

Detector = Literal["hog", "cnn", "haar"]
#: Longest side, after upsampling, each detector scans (the CNN costs seconds per megapixel
#: without BLAS).
MAX_SCAN_SIDE: dict[str, int] = {"hog": 4096, "haar": 4096, "cnn": 1280}
CHIP_SIZE = 150
CHIP_PADDING = 0.25
EMBEDDING_DIM = 128
#: Average each embedding with its mirror image's (see the module docstring).
TEST_TIME_FLIP = False
#: Which embedding a stored vector is: vectors from another pipeline are not comparable.
ENCODER_TAG = "dlib-resnet-v1/5pt-chip150" + ("/flip" if TEST_TIME_FLIP else "")


@dataclass(frozen=True)
class Box:
    """A detected face in pixel coordinates of the image it was found in (right/bottom
    exclusive) and the detector's confidence."""

    left: int
    top: int
    right: int
    bottom: int
    score: float = 0.0

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)


def model_file(name: str) -> Path:
    """A model file shipped by the ``face-recognition-models`` package (never downloaded)."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "models" / name
        if path.is_file():
            return path
    raise ToolInputError(f"the face model {name} is not installed; install the vision extra "
                         "(pip install 'amlbot[vision]').")


def _dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise ToolInputError("dlib is not installed; install the vision extra "
                             "(pip install 'amlbot[vision]').") from None
    return dlib


class _Models(threading.local):
    """dlib and OpenCV models, loaded on first use, one set per thread."""

    def __init__(self) -> None:
        self.loaded: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        model = self.loaded.get(name)
        if model is None:
            model = self.loaded[name] = _load(name)
        return model


def _load(name: str) -> Any:
    if name == "haar":
        import cv2

        cascades = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
        path = cascades / "haarcascade_frontalface_default.xml"
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise ToolInputError(f"OpenCV's face cascade {path.name} is missing")
        return cascade
    dlib = _dlib()
    if name == "hog":
        return dlib.get_frontal_face_detector()
    if name == "cnn":
        return dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
    if name == "landmarks":
        return dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    if name == "encoder":
        return dlib.face_recognition_model_v1(
            str(model_file("dlib_face_recognition_resnet_model_v1.dat")))
    raise ValueError(f"unknown model {name}")


_models = _Models()


def detect(rgb: np.ndarray, detector: Detector = "hog", upsample: int = 1,
           adjust_threshold: float = 0.0) -> list[Box]:
    """Faces in an RGB uint8 image, in reading order (top row first, left to right).

    ``upsample`` doubles the image that many times first (dlib's HOG finds faces down to about
    80 px, 40 px after one upsampling); ``adjust_threshold`` < 0 makes HOG keep weaker
    candidates. The image is shrunk first if the scan would exceed the detector's
    ``MAX_SCAN_SIDE``, so the work stays bounded whatever is asked.
    """
    if detector not in MAX_SCAN_SIDE:
        raise ToolInputError(f"unknown detector {detector!r}; use hog, cnn or haar")
    height, width = rgb.shape[:2]
    scale = min(1.0, MAX_SCAN_SIDE[detector] / (max(height, width) * 2**upsample))
    scan = _resized(rgb, scale) if scale < 1.0 else rgb
    found: list[tuple[int, int, int, int, float]] = []
    if detector == "hog":
        rects, scores, _ = _models.get("hog").run(scan, upsample, adjust_threshold)
        found = [(r.left(), r.top(), r.right() + 1, r.bottom() + 1, s)
                 for r, s in zip(rects, scores, strict=True)]
    elif detector == "cnn":
        found = [(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1,
                  d.confidence) for d in _models.get("cnn")(scan, upsample)]
    else:
        found = _detect_haar(scan, upsample)
    boxes = [Box(max(0, round(left / scale)), max(0, round(top / scale)),
                 min(width, round(right / scale)), min(height, round(bottom / scale)),
                 float(score)) for left, top, right, bottom, score in found]
    return reading_order([b for b in boxes if b.width >= 8 and b.height >= 8])


def _resized(rgb: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.ascontiguousarray(np.asarray(Image.fromarray(rgb).resize(
        size, Image.Resampling.BILINEAR)))


def _detect_haar(rgb: np.ndarray, upsample: int) -> list[tuple[int, int, int, int, float]]:
    import cv2

    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    factor = 2**upsample
    if factor > 1:
        gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    rects, _levels, weights = _models.get("haar").detectMultiScale3(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24), outputRejectLevels=True)
    return [(int(x) // factor, int(y) // factor, int(x + w) // factor, int(y + h) // factor,
             float(weight)) for (x, y, w, h), weight in zip(rects, np.ravel(weights),
                                                             strict=True)]


def reading_order(boxes: Sequence[Box]) -> list[Box]:
    """Sort boxes into rows (by centre height, a row being about one face high), then by x."""
    if not boxes:
        return []
    row_height = max(1.0, float(np.median([b.height for b in boxes])))
    return sorted(boxes, key=lambda b: (round((b.top + b.bottom) / 2 / row_height), b.left))


def best_single_face(rgb: np.ndarray, upsample: int = 1) -> tuple[Box, str]:
    """The one face of an image known to hold exactly one (a dataset's face crop).

    The strongest HOG box at the default threshold; else the strongest candidate at a lowered
    threshold; else a box covering the middle of the crop. Returns the box and which of
    ``"detected"``, ``"relaxed"``, ``"fallback"`` gave it.
    """
    boxes = detect(rgb, "hog", upsample)
    if boxes:
        return max(boxes, key=lambda b: b.score), "detected"
    boxes = detect(rgb, "hog", upsample, adjust_threshold=-1.0)
    if boxes:
        return max(boxes, key=lambda b: b.score), "relaxed"
    height, width = rgb.shape[:2]
    # Where HOG puts the face in a tight, upright face crop (measured on ORL).
    return Box(round(0.06 * width), round(0.27 * height), round(0.9 * width),
               round(0.94 * height)), "fallback"


def face_chips(rgb: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
    """Each face aligned by its 5 landmarks into a CHIP_SIZE x CHIP_SIZE RGB chip."""
    if not boxes:
        return []
    dlib = _dlib()
    predictor = _models.get("landmarks")
    shapes = dlib.full_object_detections()
    for b in boxes:
        shapes.append(predictor(rgb, dlib.rectangle(b.left, b.top, b.right - 1, b.bottom - 1)))
    return [np.asarray(c) for c in dlib.get_face_chips(rgb, shapes, CHIP_SIZE, CHIP_PADDING)]


def _encode_batch(chips: Sequence[np.ndarray]) -> np.ndarray:
    vectors = _models.get("encoder").compute_face_descriptor(list(chips))
    return np.asarray([np.asarray(v) for v in vectors], dtype=np.float64).reshape(
        len(chips), EMBEDDING_DIM)


@functools.lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    # Kept for the life of the process so that its threads keep their loaded encoders.
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="faces-encode")


def encode_chips(chips: Sequence[np.ndarray], *, flip: bool = TEST_TIME_FLIP, threads: int = 1
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeddings of aligned chips: (n, 128) averaged with the mirror image when ``flip``, and
    the plain (unflipped) ones too when ``flip`` (else None). ``threads`` > 1 encodes in
    parallel."""
    if not chips:
        empty = np.zeros((0, EMBEDDING_DIM))
        return empty, (empty if flip else None)
    batch = [np.ascontiguousarray(c) for c in chips]
    if flip:
        batch += [np.ascontiguousarray(c[:, ::-1]) for c in chips]
    if threads <= 1 or len(batch) < 2:
        vectors = _encode_batch(batch)
    else:
        parts = [p for p in np.array_split(np.arange(len(batch)), threads) if len(p)]
        results = _pool(threads).map(lambda idx: _encode_batch([batch[i] for i in idx]), parts)
        vectors = np.concatenate(list(results))
    n = len(chips)
    if not flip:
        return vectors, None
    return (vectors[:n] + vectors[n:]) / 2.0, vectors[:n]


@dataclass(frozen=True)
class FoundFace:
    """A face in a photo and its embedding."""

    box: Box
    embedding: np.ndarray


def find_faces(rgb: np.ndarray, *, detector: Detector = "hog", upsample: int = 1,
               max_faces: int = 100, threads: int = 1) -> tuple[list[FoundFace], int]:
    """Detect, align and encode the faces of a photo (at most ``max_faces``, the largest);
    returns them in reading order and the number detected."""
    boxes = detect(rgb, detector, upsample)
    kept = boxes
    if len(boxes) > max_faces:
        largest = sorted(boxes, key=lambda b: b.area, reverse=True)[:max_faces]
        kept = reading_order(largest)
    embeddings, _ = encode_chips(face_chips(rgb, kept), threads=threads)
    return [FoundFace(b, e) for b, e in zip(kept, embeddings, strict=True)], len(boxes)
