"""Face alignment: cut an FFHQ-style square crop of the face out of a region, and remember how.

With landmarks (from dlib when it is installed, or supplied by the caller) the crop follows the FFHQ
construction, so the generator sees faces posed the way it was trained: eyes level, at a fixed height and
distance. Without them the largest centred square of the region is used and ``Alignment.notice`` says
why. Either way the result carries the exact affine transform between region and crop, which the
paste-back inverts.

Points are (x, y) in pixel-centre coordinates (see ``anycost.editing.warp``). ``left_eye`` is the eye on
the image's left (the subject's right eye), likewise ``mouth_left``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import warp
from .region import Region

METHOD_LANDMARKS = "landmarks"
METHOD_CENTER = "center-crop"
# Faces are detected on a copy of the region no larger than this (HOG detection time grows with area);
# landmarks are then fitted on the full-resolution pixels.
DETECT_MAX_SIDE = 1024
# Environment variable naming a dlib shape-predictor .dat file, overriding the packaged ones.
PREDICTOR_ENV = "ANYCOST_DLIB_PREDICTOR"
PREDICTOR_FILES = ("shape_predictor_68_face_landmarks.dat", "shape_predictor_5_face_landmarks.dat")
# dlib's 5-point model has no mouth points; the mouth centre is estimated along the eyes → nose-base line,
# this many times the eye-to-nose distance (a typical adult proportion; individual faces vary by ±15 %).
NOSE_TO_MOUTH_RATIO = 1.65
INSTALL_HINT = "pip install 'anycost-face-edit[align]'"
# dlib's detector and predictor are shared, cached objects; calls into them are serialised.
_DLIB_LOCK = threading.Lock()


@dataclass
class Alignment:
    """An aligned crop and the transform that produced it.

    ``matrix`` maps region coordinates to crop coordinates (3 × 3, a similarity) and ``inverse`` maps back.
    ``face_mask`` (size × size, float32 in [0, 1]) marks where the face is in the crop; the paste-back
    blends only there. ``notice`` is a sentence for the user when alignment fell back to a plain crop."""

    image: np.ndarray
    matrix: np.ndarray
    inverse: np.ndarray
    face_mask: np.ndarray
    method: str
    region_size: tuple[int, int]  # (height, width)
    notice: str | None = None
    landmarks: dict[str, tuple[float, float]] | None = field(default=None)
    # True: a face was found (or landmarks given); False: one was looked for and not found; None: not looked for
    face_found: bool | None = None

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    def to_aligned(self, points) -> np.ndarray:
        """Region points (N, 2) → crop points."""
        return warp.apply(self.matrix, points)

    def to_region(self, points) -> np.ndarray:
        """Crop points (N, 2) → region points."""
        return warp.apply(self.inverse, points)

    def corners(self) -> np.ndarray:
        """The crop's outer corners in region coordinates: top-left, top-right, bottom-right, bottom-left."""
        s = self.size
        return self.to_region([[-0.5, -0.5], [s - 0.5, -0.5], [s - 0.5, s - 0.5], [-0.5, s - 0.5]])


# ----------------------------------------------------------------------------------------------------
# geometry


def ffhq_frame(left_eye, right_eye, mouth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre ``c`` and half-axes ``x``, ``y`` of the FFHQ crop square (corners ``c ± x ± y``) for the two
    eye centres and the mouth centre."""
    el, er, m = (np.asarray(p, dtype=np.float64) for p in (left_eye, right_eye, mouth))
    eye_avg = 0.5 * (el + er)
    eye_to_eye = er - el
    eye_to_mouth = m - eye_avg
    # The x axis blends the eye line with the perpendicular of the eye→mouth line, so neither a tilted
    # mouth nor a turned head alone dictates the rotation.
    x = eye_to_eye - _rot90(eye_to_mouth)
    norm = np.hypot(*x)
    half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    if not np.isfinite(norm) or norm < 1e-6 or not np.isfinite(half) or half < 1e-6:
        raise InputError("the face landmarks are degenerate (eyes and mouth coincide); cannot align the face")
    x = x / norm * half
    y = _rot90(x)
    c = eye_avg + 0.1 * eye_to_mouth
    return c, x, y


@dataclass(frozen=True)
class Framing:
    """Where a model's own images put the face, relative to the FFHQ crop of its landmarks.

    FFHQ-trained models expect the FFHQ crop. A model trained on other images (the demo's drawn faces)
    saw faces larger or smaller and placed elsewhere; aligning its user's faces the FFHQ way hands it
    framings it never learnt, and it reconstructs and edits them worse. The crop square is scaled by
    ``scale`` and its centre moved by ``shift`` (in half-sides of the FFHQ square, along its x axis —
    the eye line — and its y axis, down the face); the rotation stays the face's own."""

    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and 0.2 <= self.scale <= 5.0 and all(np.isfinite(self.shift))
                and all(abs(v) <= 2.0 for v in self.shift)):
            raise InputError(f"a face framing needs a scale in [0.2, 5] and shifts within ±2, got "
                             f"{self.scale!r}, {self.shift!r}")

    def apply(self, c: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The FFHQ square ``c ± x ± y`` → this framing's square."""
        return c + self.shift[0] * x + self.shift[1] * y, self.scale * x, self.scale * y

    @classmethod
    def of_image(cls, landmarks, width: int, height: int) -> Framing:
        """The framing that turns the FFHQ square of ``landmarks`` into the image's largest centred square:
        measured on a model's training images (or samples), where the face sits as the model expects."""
        pts = normalize_landmarks(landmarks)
        c, x, y = ffhq_frame(pts["left_eye"], pts["right_eye"], pts["mouth"])
        d = np.array([(width - 1) / 2.0, (height - 1) / 2.0]) - c
        half = np.hypot(*x)
        return cls(float(min(width, height) / 2.0 / half),
                   (float(np.dot(d, x) / half ** 2), float(np.dot(d, y) / half ** 2)))

    @classmethod
    def median(cls, framings: list[Framing]) -> Framing:
        if not framings:
            raise InputError("no face framing was measured")
        return cls(float(np.median([f.scale for f in framings])),
                   (float(np.median([f.shift[0] for f in framings])), float(np.median([f.shift[1] for f in framings]))))

    def to_info(self) -> dict:
        return {"scale": round(self.scale, 4), "shift": [round(self.shift[0], 4), round(self.shift[1], 4)]}

    @classmethod
    def from_info(cls, info: dict) -> Framing | None:
        """The model file's ``info["framing"]``; None without one (the FFHQ crop)."""
        rec = info.get("framing")
        if rec is None:
            return None
        try:
            return cls(float(rec["scale"]), (float(rec["shift"][0]), float(rec["shift"][1])))
        except (TypeError, KeyError, IndexError, ValueError) as e:
            raise InputError(f"the model file's info.framing is malformed ({e})") from None


def _rot90(v: np.ndarray) -> np.ndarray:
    """Quarter turn that takes the image's x axis to its y axis (downwards, as y grows down)."""
    return np.array([-v[1], v[0]])


def frame_matrix(c: np.ndarray, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Region → crop matrix sending the square ``c ± x ± y`` onto the crop's outer pixel edges."""
    q0 = c - x - y
    a = np.stack([x / np.dot(x, x), y / np.dot(y, y)]) * (size / 2.0)
    m = np.eye(3)
    m[:2, :2] = a
    m[:2, 2] = -a @ q0 - 0.5
    return m


def face_mask(size: int, center=(0.5, 0.5), radii=(0.40, 0.44), softness: float = 0.12) -> np.ndarray:
    """Soft ellipse over face and hair in an FFHQ-aligned crop: 1 well inside, a smooth fall-off
    ``softness`` wide (fraction of the crop side) centred on the ellipse, exactly 0 beyond. Float32."""
    t = (np.arange(size, dtype=np.float64) + 0.5) / size
    dx = (t[None, :] - center[0]) / radii[0]
    dy = (t[:, None] - center[1]) / radii[1]
    r = np.sqrt(dx * dx + dy * dy)
    # Approximate distance outside the ellipse as a fraction of the crop side.
    d = (r - 1.0) * min(radii)
    return _smoothstep(0.5 - d / softness).astype(np.float32)


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# ----------------------------------------------------------------------------------------------------
# landmarks


def normalize_landmarks(landmarks) -> dict[str, tuple[float, float]]:
    """Accept a dict with 'left_eye', 'right_eye' and either 'mouth' or 'mouth_left' + 'mouth_right', or a
    dlib-ordered (68, 2) / (5, 2) array; return a dict that always has 'left_eye', 'right_eye', 'mouth'."""
    if isinstance(landmarks, Mapping):
        pts = {}
        for key, value in landmarks.items():
            p = np.asarray(value, dtype=np.float64).reshape(-1)
            if p.shape != (2,) or not np.all(np.isfinite(p)):
                raise InputError(f"landmark {key!r} must be a finite (x, y) point (got {value!r})")
            pts[str(key)] = (float(p[0]), float(p[1]))
        missing = [k for k in ("left_eye", "right_eye") if k not in pts]
        if "mouth" not in pts:
            missing += [k for k in ("mouth_left", "mouth_right") if k not in pts]
        if missing:
            raise InputError(
                f"face landmarks are missing {', '.join(missing)}; need left_eye, right_eye and mouth "
                "(or mouth_left and mouth_right)"
            )
        if "mouth" not in pts:
            pts["mouth"] = _pt(0.5 * (np.asarray(pts["mouth_left"]) + np.asarray(pts["mouth_right"])))
        return pts
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.shape == (68, 2):
        return _from_68(arr)
    if arr.shape == (5, 2):
        return _from_5(arr)
    raise InputError(f"landmarks must be a dict or a (68, 2) / (5, 2) array (got shape {arr.shape})")


def _from_68(p: np.ndarray) -> dict[str, tuple[float, float]]:
    if not np.all(np.isfinite(p)):
        raise InputError("face landmarks contain non-finite values")
    left, right = p[36:42].mean(0), p[42:48].mean(0)
    ml, mr = p[48], p[54]
    return {
        "left_eye": _pt(left), "right_eye": _pt(right), "mouth_left": _pt(ml), "mouth_right": _pt(mr),
        "mouth": _pt(0.5 * (ml + mr)),
    }


def _pt(p) -> tuple[float, float]:
    return (float(p[0]), float(p[1]))


def _from_5(p: np.ndarray) -> dict[str, tuple[float, float]]:
    if not np.all(np.isfinite(p)):
        raise InputError("face landmarks contain non-finite values")
    a, b, nose = p[0:2].mean(0), p[2:4].mean(0), p[4]
    # Order the eyes by orientation (not by x), so strongly rotated faces stay consistent:
    # for the image-left eye L, (R - L) × (nose - L) > 0 with y pointing down.
    d, n = b - a, nose - a
    left, right = (a, b) if d[0] * n[1] - d[1] * n[0] > 0 else (b, a)
    eye_avg = 0.5 * (left + right)
    mouth = eye_avg + NOSE_TO_MOUTH_RATIO * (nose - eye_avg)
    return {"left_eye": _pt(left), "right_eye": _pt(right), "mouth": _pt(mouth), "nose": _pt(nose)}


def predictor_path() -> Path | None:
    """The dlib shape-predictor file to use: ``$ANYCOST_DLIB_PREDICTOR``, else the 68-point (or 5-point)
    model shipped by the ``face-recognition-models`` package, located without importing it."""
    env = os.environ.get(PREDICTOR_ENV)
    if env:
        return Path(env)
    dirs: list[Path] = []
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) / "models" for p in spec.submodule_search_locations]
    dirs += [Path(p) / "face_recognition_models" / "models" for p in sys.path if p]
    for name in PREDICTOR_FILES:
        for d in dirs:
            if (d / name).is_file():
                return d / name
    return None


class LandmarksUnavailable(Exception):
    """No landmarks: detection cannot run or finds no face; the message is the user-facing reason."""


@functools.lru_cache(maxsize=4)
def _load_dlib(path: str):
    try:
        import dlib
    except ImportError:
        raise LandmarksUnavailable(f"dlib is not installed ({INSTALL_HINT})") from None
    if not Path(path).is_file():
        raise LandmarksUnavailable(f"the landmark model {path!r} does not exist")
    try:
        predictor = dlib.shape_predictor(path)
    except RuntimeError as e:
        raise LandmarksUnavailable(f"the landmark model {path!r} could not be loaded ({e})") from None
    return dlib, dlib.get_frontal_face_detector(), predictor


def dlib_available() -> bool:
    """True when dlib and a shape-predictor file can be loaded."""
    try:
        _models()
    except LandmarksUnavailable:
        return False
    return True


def _models():
    path = predictor_path()
    if path is None:
        try:
            import dlib  # noqa: F401
        except ImportError:
            raise LandmarksUnavailable(f"dlib is not installed ({INSTALL_HINT})") from None
        raise LandmarksUnavailable(f"no dlib landmark model was found ({INSTALL_HINT}, or set {PREDICTOR_ENV})")
    return _load_dlib(str(path))


def detect_landmarks(region: Region) -> dict[str, tuple[float, float]]:
    """Landmarks of the most prominent face in the region (the one best covered by the selection, then
    the largest). Raises ``LandmarksUnavailable`` with a reason when there is none."""
    dlib, detector, predictor = _models()
    rgb = np.ascontiguousarray(region.rgb)
    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = rgb
    if scale < 1.0:
        small = warp.resize_uint8(rgb, max(1, round(w * scale)), max(1, round(h * scale)))
        scale = small.shape[1] / w
    # The HOG detector finds faces of about 80 px and up; one upsampling step halves that for small inputs.
    upsample = 1 if max(small.shape[:2]) < 600 else 0
    with _DLIB_LOCK:
        rects = list(detector(small, upsample))
    if not rects:
        raise LandmarksUnavailable("no face was found in the region")

    def score(r) -> tuple[float, float]:
        area = float(max(r.width(), 0) * max(r.height(), 0))
        if region.mask is None:
            return (0.0, area)
        x0, y0 = int(max(r.left() / scale, 0)), int(max(r.top() / scale, 0))
        x1, y1 = int(min(r.right() / scale + 1, w)), int(min(r.bottom() / scale + 1, h))
        inside = region.mask[y0:y1, x0:x1]
        return (float(inside.mean()) if inside.size else 0.0, area)

    best = max(rects, key=score)
    full = dlib.rectangle(
        round(best.left() / scale), round(best.top() / scale), round(best.right() / scale), round(best.bottom() / scale)
    )
    with _DLIB_LOCK:
        shape = predictor(rgb, full)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64)
    if pts.shape[0] not in (68, 5):
        raise LandmarksUnavailable(f"the landmark model gives {pts.shape[0]} points; 68 or 5 are supported")
    return normalize_landmarks(pts)


# ----------------------------------------------------------------------------------------------------


def align_face(
    region: Region, out_size: int, *, use_landmarks: bool = True, landmarks=None, framing: Framing | None = None
) -> Alignment:
    """Aligned square crop (``out_size`` px) of the face in ``region``.

    ``landmarks`` (see ``normalize_landmarks``) skips detection. Otherwise dlib finds the face when
    ``use_landmarks`` is set and it is installed; failing that the largest centred square is used.
    ``framing`` places the crop where the model's own images put the face (default: the FFHQ crop)."""
    if isinstance(out_size, bool) or int(out_size) != out_size or not 8 <= int(out_size) <= 8192:
        raise InputError(f"the aligned size must be an integer between 8 and 8192 (got {out_size!r})")
    size = int(out_size)
    h, w = region.height, region.width
    notice = None
    pts = None
    if landmarks is not None:
        pts = normalize_landmarks(landmarks)
    elif use_landmarks:
        try:
            pts = detect_landmarks(region)
        except LandmarksUnavailable as e:
            notice = f"Face alignment fell back to a centred square crop: {e}."
    else:
        notice = "Face alignment is off; using a centred square crop of the region."

    if pts is not None:
        c, x, y = ffhq_frame(pts["left_eye"], pts["right_eye"], pts["mouth"])
        if framing is not None:
            c, x, y = framing.apply(c, x, y)
        method = METHOD_LANDMARKS
    else:
        side = min(w, h)
        c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        x, y = np.array([side / 2.0, 0.0]), np.array([0.0, side / 2.0])
        method = METHOD_CENTER
    m = frame_matrix(c, x, y, size)
    inv = np.linalg.inv(m)
    image = warp.warp_uint8(region.rgb, inv, size, size)
    return Alignment(
        image=image, matrix=m, inverse=inv, face_mask=face_mask(size), method=method,
        region_size=(h, w), notice=notice, landmarks=pts,
        face_found=True if pts is not None else (False if use_landmarks else None),
    )
