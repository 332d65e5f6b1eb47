"""Drawing a synthetic portrait from its ``FaceAttributes``.

Shapes are drawn with Pillow on a supersampled canvas (about 384 px or more) and reduced with a Lanczos
filter, so edges stay smooth at any output size. The head is laid out in head-local units (u across the
face, v from crown to chin); turning the head moves features along a cylinder, tilting it rotates every
point about the base of the neck, and a final pass shades the head as a lit ellipsoid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError
from .face_attributes import MAX_LIGHT_DEG, MAX_ROLL_DEG, MAX_YAW_DEG, N_STYLE, FaceAttributes

# ---------------------------------------------------------------------------------------------------------
# colours


def _lerp(a, b, t):
    return np.asarray(a, dtype=np.float64) * (1.0 - t) + np.asarray(b, dtype=np.float64) * t


def _palette(stops: Sequence[Sequence[float]], t: float) -> np.ndarray:
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    return _lerp(stops[i], stops[i + 1], t - i)


_SKIN = ((252, 224, 206), (236, 192, 160), (204, 150, 110), (150, 98, 64), (92, 58, 38))
_IRIS = ((80, 50, 25), (120, 80, 40), (70, 110, 150), (90, 120, 80), (110, 110, 120), (45, 30, 20))


def _rgba(c, a: float = 1.0) -> tuple[int, int, int, int]:
    c = np.clip(np.asarray(c, dtype=np.float64), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]), int(round(255 * min(max(a, 0.0), 1.0))))


def hair_colour(darkness: float, redness: float, greyness: float = 0.0) -> np.ndarray:
    """RGB of hair from the two colour labels, blended towards grey by ``greyness``."""
    light = _lerp((228, 200, 140), (220, 120, 55), redness)
    dark = _lerp((28, 22, 20), (110, 42, 22), redness)
    base = _lerp(light, dark, darkness**0.8)
    grey = np.array([200.0, 200.0, 198.0]) * (0.75 + 0.25 * (1 - darkness))
    return _lerp(base, grey, greyness)


# ---------------------------------------------------------------------------------------------------------
# geometry


def _smooth(t: np.ndarray | float) -> np.ndarray | float:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


class _Head:
    """Head-local coordinates: u runs -1..1 across the face, v runs -1 (crown) .. 1 (chin)."""

    def __init__(self, cx: float, cy: float, hw: float, hh: float, yaw: float):
        self.cx, self.cy, self.hw, self.hh = cx, cy, hw, hh
        self.beta = math.radians(yaw)

    def turn(self, u: np.ndarray | float, depth: float = 1.0) -> np.ndarray | float:
        """Horizontal position of a surface point after the head turns (points on a cylinder of radius
        ``depth``; the nose sits on a larger one, so it moves further)."""
        a = np.arcsin(np.clip(np.asarray(u) / depth, -1.0, 1.0))
        return depth * np.sin(a + self.beta)

    def squeeze(self, u: float) -> float:
        """Foreshortening of a small feature at ``u``."""
        a = math.asin(min(max(u, -1.0), 1.0))
        return max(0.15, math.cos(a + self.beta) / max(math.cos(a), 1e-3))

    def xy(self, u, v) -> list[tuple[float, float]]:
        u = np.atleast_1d(np.asarray(u, dtype=np.float64))
        v = np.atleast_1d(np.asarray(v, dtype=np.float64))
        x = self.cx + u * self.hw
        y = self.cy + v * self.hh
        return list(zip(x.tolist(), y.tolist(), strict=False))

    def pt(self, u: float, v: float) -> tuple[float, float]:
        return (self.cx + u * self.hw, self.cy + v * self.hh)


def _face_outline(h: _Head, jaw: float, chin: float, n: int = 72) -> tuple[np.ndarray, np.ndarray]:
    """Outline of the face as (u, v) arrays: a rounded cranium, a tapering jaw, and a lower face that
    follows the chin when the head turns."""
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    s, c = np.sin(th), -np.cos(th)  # c: -1 at the crown, +1 at the chin
    u = np.sign(s) * np.abs(s) ** 0.85
    low = np.clip(c, 0, 1)
    u = u * (1 - jaw * low**2.2) * (1 - chin * low**6)
    v = np.sign(c) * np.abs(c) ** 0.95
    u = u + math.sin(h.beta) * 0.45 * _smooth((v - 0.05) / 0.95)
    return u, v


def _width_at(u_out: np.ndarray, v_out: np.ndarray, v: float, side: int) -> float:
    """u of the outline on one side (side=-1 left, +1 right) at height v."""
    mask = (u_out * side) > 0
    uu, vv = u_out[mask], v_out[mask]
    order = np.argsort(vv)
    return float(np.interp(v, vv[order], uu[order]))


def _curve(x0, x1, y_of_t, n: int = 16):
    t = np.linspace(-1, 1, n)
    return [(float(x0 + (x1 - x0) * (tt + 1) / 2), float(y_of_t(tt))) for tt in t]


def _wobble(rng: np.random.Generator, n: int, amp: float, freq: float) -> np.ndarray:
    ph = rng.random(3) * 2 * np.pi
    t = np.linspace(0, 1, n)
    return amp * (np.sin(2 * np.pi * freq * t + ph[0]) + 0.5 * np.sin(2 * np.pi * 2.3 * freq * t + ph[1]))


def _supersample(res: int) -> int:
    return int(min(8, max(2, round(384 / res))))


def _background(rng: np.random.Generator, st: Sequence[float], size: int) -> Image.Image:
    kind = int(st[0] * 4)
    c1 = rng.random(3) * 200 + 30
    c2 = np.clip(c1 + (rng.random(3) - 0.5) * 160, 0, 255)
    if kind == 0:  # flat
        grid = np.broadcast_to(c1, (2, 2, 3))
    elif kind == 1:  # linear gradient in a random direction
        ang = rng.random() * 2 * np.pi
        yy, xx = np.mgrid[0:16, 0:16] / 15.0 - 0.5
        t = np.clip(0.5 + xx * math.cos(ang) + yy * math.sin(ang), 0, 1)[..., None]
        grid = c1 * (1 - t) + c2 * t
    elif kind == 2:  # soft blotches (out-of-focus room)
        g = int(3 + rng.integers(0, 6))
        t = rng.random((g, g, 1))
        grid = c1 * (1 - t) + c2 * t
    else:  # vignette
        yy, xx = np.mgrid[0:16, 0:16] / 15.0 - 0.5
        t = np.clip(np.sqrt(xx**2 + yy**2) * 1.6, 0, 1)[..., None]
        grid = c1 * (1 - t) + c2 * 0.5 * t
    img = Image.fromarray(np.ascontiguousarray(grid).astype(np.uint8), "RGB")
    img = img.resize((size, size), Image.BICUBIC)
    if kind == 2 or st[1] > 0.7:  # fine texture (paper / wall)
        n = max(8, size // 6)
        noise = (rng.random((n, n)) - 0.5) * 36 * st[2]
        tex = Image.fromarray(np.clip(noise + 128, 0, 255).astype(np.uint8), "L").resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.int16) + (np.asarray(tex, dtype=np.int16)[..., None] - 128)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img


class _TiltedPen:
    """The subset of ``ImageDraw`` used here, with every shape rotated clockwise by ``deg`` about
    ``centre``; ellipses and arcs become polygons so that they rotate too. Drawing the head through it
    is cheaper and sharper than rotating a separate layer."""

    def __init__(self, draw: ImageDraw.ImageDraw, deg: float, centre: tuple[float, float]):
        self.draw = draw
        r = math.radians(deg)
        self.c, self.s = math.cos(r), math.sin(r)
        self.px, self.py = centre

    def _t(self, pts) -> list[tuple[float, float]]:
        a = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        dx, dy = a[:, 0] - self.px, a[:, 1] - self.py
        x = self.px + dx * self.c - dy * self.s
        y = self.py + dx * self.s + dy * self.c
        return list(zip(x.tolist(), y.tolist(), strict=True))

    @staticmethod
    def _oval(box, start: float = 0.0, end: float = 360.0, squareness: float = 0.0):
        (x0, y0), (x1, y1) = (box[0], box[1]) if len(box) == 2 else ((box[0], box[1]), (box[2], box[3]))
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
        n = int(min(72, max(12, (rx + ry) * (end - start) / 360.0)))
        t = np.radians(np.linspace(start, end, n, endpoint=(end - start) < 360))
        ex = 2.0 / (2.0 + 6.0 * squareness)  # superellipse exponent: 1 = ellipse, smaller = squarer
        c, s = np.cos(t), np.sin(t)
        x = cx + rx * np.sign(c) * np.abs(c) ** ex
        y = cy + ry * np.sign(s) * np.abs(s) ** ex
        return np.stack([x, y], axis=1)

    def polygon(self, xy, fill=None, outline=None, width: int = 1) -> None:
        self.draw.polygon(self._t(xy), fill=fill, outline=outline, width=width)

    def line(self, xy, fill=None, width: int = 1, joint=None) -> None:
        self.draw.line(self._t(xy), fill=fill, width=width, joint=joint)

    def ellipse(self, box, fill=None, outline=None, width: int = 1) -> None:
        self.polygon(self._oval(box), fill=fill, outline=outline, width=width)

    def rounded_rectangle(self, box, fill=None, outline=None, width: int = 1) -> None:
        self.polygon(self._oval(box, squareness=0.6), fill=fill, outline=outline, width=width)

    def arc(self, box, start: float, end: float, fill=None, width: int = 1) -> None:
        self.line(self._oval(box, start, end), fill=fill, width=width, joint="curve")


# ---------------------------------------------------------------------------------------------------------
# the portrait


class _Portrait:
    """Layout, colours and drawing steps of one portrait on a canvas of ``S`` × ``S`` pixels."""

    def __init__(self, a: FaceAttributes, S: int):
        self.a, self.S = a, S
        st = self.st = a.style
        # One random stream per purpose, so that switching one attribute does not reshuffle the
        # details drawn after it.
        self.rs = [np.random.default_rng(q) for q in np.random.SeedSequence(a.detail_seed).spawn(9)]
        age = a.age

        # proportions
        scale = 0.92 + 0.16 * st[3]
        hw = self.hw = S * 0.225 * scale * (0.93 + 0.12 * st[4])
        hh = self.hh = hw * (1.22 + 0.22 * st[5])
        self.cx = S * (0.5 + 0.04 * (st[6] - 0.5))
        self.cy = S * (0.46 + 0.04 * (st[7] - 0.5))
        self.roll_deg = (a.roll - 0.5) * 2 * MAX_ROLL_DEG
        self.h = _Head(self.cx, self.cy, hw, hh, (a.yaw - 0.5) * 2 * MAX_YAW_DEG)
        jaw = 0.1 + 0.2 * st[8] - 0.06 * (1 - age)
        chin = 0.05 + 0.3 * st[9]
        self.u_out, self.v_out = _face_outline(self.h, jaw, chin)
        self.lw = max(1.0, S / 300)  # a "1 px at 300 px" line width unit
        self.neck_w = 0.34 + 0.1 * st[13]
        self.sh_y = self.cy + hh * (1.3 + 0.08 * st[14])
        self.sh_w = hw * (2.1 + 0.5 * st[15])
        self.pivot = (self.cx, self.sh_y)  # the head tilts about the base of the neck

        # colours
        skin = _palette(_SKIN, a.skin_tone) * (0.96 + 0.08 * st[10])
        skin = skin + (np.array([8.0, -2.0, -8.0]) * (st[11] - 0.5))
        grey_skin = skin.mean()
        self.skin = _lerp(skin, (grey_skin + 6, grey_skin + 2, grey_skin - 4), 0.25 * age)
        self.skin_dark = self.skin * 0.72
        self.greyness = float(np.clip((age - 0.5) / 0.4, 0, 1)) * (0.55 + 0.45 * st[12])
        self.hair = hair_colour(a.hair_darkness, a.hair_redness, self.greyness)
        brow = hair_colour(a.hair_darkness, a.hair_redness, self.greyness * 0.6) * 0.8
        self.brow_col = _lerp(brow, self.skin_dark, 0.15)
        self.shirt = self.rs[1].random(3) * 210 + 20

        # hair layout
        self.length = a.hair_length
        self.hair_end_v = 0.05 + 2.3 * self.length**1.2  # lowest point of the hair, head units
        self.volume = 1.04 + 0.16 * st[16] + 0.05 * self.length
        self.wave = 0.02 + 0.06 * st[17]
        recede = 0.25 * max(0.0, age - 0.55) * (st[18] > 0.5)
        self.hairline_v = -0.52 - 0.08 * st[19] - recede
        self.part = (st[20] - 0.5) * 0.9  # side parting position
        self.hair_shift = -0.12 * math.sin(self.h.beta)  # the back of the head shows on the far side

        # feature layout
        self.eye_v = -0.02 + 0.1 * (st[23] - 0.5)
        self.brow_v = self.eye_v - 0.2 - 0.05 * st[30]
        self.nose_v = 0.34 + 0.08 * st[5]
        self.mouth_v = 0.6 + 0.06 * (st[14] - 0.5)
        self.light_dir = (a.lighting - 0.5) * 2
        self.gaze = (self.rs[1].random() - 0.5) * 0.5 - 0.6 * math.sin(self.h.beta)
        self.eye_centres: list[tuple[float, float, float, float, float]] = []

    # --- scene ------------------------------------------------------------------------------------

    def start(self) -> None:
        S, cx, hw, hh, sh_y, sh_w = self.S, self.cx, self.hw, self.hh, self.sh_y, self.sh_w
        self.scene = _background(self.rs[0], self.st[0:3], S)
        nw = self.neck_w * hw * 1.1
        body = [
            (cx - nw, sh_y - 0.05 * hh),
            (cx - sh_w * 0.7, sh_y + 0.18 * hh),
            (cx - sh_w, sh_y + 0.6 * hh),
            (cx - sh_w * 1.1, S * 1.1),
            (cx + sh_w * 1.1, S * 1.1),
            (cx + sh_w, sh_y + 0.6 * hh),
            (cx + sh_w * 0.7, sh_y + 0.18 * hh),
            (cx + nw, sh_y - 0.05 * hh),
        ]
        ImageDraw.Draw(self.scene).polygon(body, fill=_rgba(self.shirt)[:3])
        # the mask records the head for the lighting pass
        self.mask = Image.new("L", (S, S), 0)
        self.d = _TiltedPen(ImageDraw.Draw(self.scene, "RGBA"), self.roll_deg, self.pivot)
        self.m = _TiltedPen(ImageDraw.Draw(self.mask), self.roll_deg, self.pivot)

    def fill(self, points, colour, alpha: float = 1.0, solid: bool = True) -> None:
        self.d.polygon(points, fill=_rgba(colour, alpha))
        if solid:
            self.m.polygon(points, fill=255)

    def neckline(self) -> None:
        """The shirt's neckline goes over the (untilted) base of the neck."""
        cx, hw, hh, sh_y, sh_w, st = self.cx, self.hw, self.hh, self.sh_y, self.sh_w, self.st
        depth = hh * (0.08 + 0.3 * st[16])
        pts = [
            (cx + t * self.neck_w * hw * 1.3, sh_y - 0.04 * hh + depth * (1 - abs(t) ** (1.2 + 2 * st[17])))
            for t in np.linspace(-1, 1, 11)
        ]
        pts += [(cx + sh_w * 0.8, sh_y + 0.8 * hh), (cx - sh_w * 0.8, sh_y + 0.8 * hh)]
        ImageDraw.Draw(self.scene).polygon(pts, fill=_rgba(self.shirt)[:3])
        ImageDraw.Draw(self.mask).polygon(pts, fill=0)

    # --- head -------------------------------------------------------------------------------------

    def back_hair(self) -> None:
        """Long hair behind the head and shoulders."""
        h, volume, shift, end = self.h, self.volume, self.hair_shift, self.hair_end_v
        if end <= 0.3:
            return
        n = 24
        yb = np.linspace(0.0, end, n)
        flare = volume + 0.25 * _smooth((yb - 0.2) / 1.5)
        wob = _wobble(self.rs[2], n, self.wave, 2.0)
        left = [h.pt(-flare[i] - wob[i] + shift, yb[i]) for i in range(n)]
        right = [h.pt(flare[i] + wob[i] + shift, yb[i]) for i in range(n)][::-1]
        bottom = [h.pt(-flare[-1] * 0.8 + shift, end + 0.08), h.pt(flare[-1] * 0.8 + shift, end + 0.08)]
        phi = np.linspace(np.pi / 2, -np.pi / 2, 15)
        top = h.xy(
            volume * np.sign(np.sin(phi)) * np.abs(np.sin(phi)) ** 0.8 + shift,
            -(1.0 + (volume - 1.0) * 1.5) * np.abs(np.cos(phi)) ** 0.9,
        )
        self.fill(left + bottom + right + top, self.hair * 0.7)

    def neck_and_ears(self) -> None:
        h, d, st, nw = self.h, self.d, self.st, self.neck_w
        low = (self.sh_y - self.cy) / self.hh + 0.6
        self.fill([h.pt(-nw * 0.9, 0.5), h.pt(-nw, low), h.pt(nw, low), h.pt(nw * 0.9, 0.5)], self.skin * 0.93)
        d.ellipse([h.pt(-nw * 1.1, 0.75), h.pt(nw * 1.1, 1.15)], fill=_rgba(self.skin_dark, 0.35))  # chin shadow
        # ears sit behind the face outline; the one on the near side shows more when the head turns
        ear_v = -0.02 + 0.06 * st[21]
        ear_h = 0.4 + 0.1 * st[22]
        for side in (-1, 1):
            vis = 1.0 - side * math.sin(h.beta) * 1.6
            if vis <= 0.15:
                continue
            ew = 0.12 * min(vis, 1.4)
            eu = side * (_width_at(self.u_out, self.v_out, ear_v + 0.1, side) * side + 0.02 + 0.05 * (vis - 1))
            (xa, y0), (xb, y1) = h.pt(eu - ew, ear_v - ear_h * 0.35), h.pt(eu + ew, ear_v + ear_h * 0.65)
            x0, x1 = min(xa, xb), max(xa, xb)
            d.ellipse([(x0, y0), (x1, y1)], fill=_rgba(self.skin * 0.96))
            self.m.ellipse([(x0, y0), (x1, y1)], fill=255)
            fx0, fx1 = (0.3, 0.75) if side < 0 else (0.25, 0.7)
            inner = [(x0 + (x1 - x0) * fx0, y0 + (y1 - y0) * 0.22), (x0 + (x1 - x0) * fx1, y0 + (y1 - y0) * 0.75)]
            d.ellipse(inner, fill=_rgba(self.skin_dark, 0.55))

    def face(self) -> None:
        self.fill(self.h.xy(self.u_out, self.v_out), self.skin)

    def eyes(self) -> None:
        a, h, d, st, hw, hh = self.a, self.h, self.d, self.st, self.hw, self.hh
        skin, skin_dark, age = self.skin, self.skin_dark, a.age
        eye_u = 0.36 + 0.1 * st[24]
        eye_a = (0.19 + 0.05 * st[25]) * (1.1 - 0.15 * age)
        eye_b = eye_a * (0.42 + 0.18 * st[26]) * (1 - 0.12 * a.smile**2) * (1.05 - 0.15 * age)
        tilt = (st[27] - 0.5) * 0.25
        iris_rgb = _IRIS[int(st[28] * len(_IRIS)) % len(_IRIS)]
        for side in (-1, 1):
            u0 = side * eye_u
            ex, ey = h.pt(float(h.turn(u0)), self.eye_v)
            sq = h.squeeze(u0)
            ax, by = eye_a * hw * sq, eye_b * hh * 0.75
            self.eye_centres.append((ex, ey, ax, by, sq))

            def upper(t, ey=ey, by=by, side=side):
                return ey - by * (1 - t * t) ** 0.75 - side * tilt * by * t

            def lower(t, ey=ey, by=by, side=side):
                return ey + by * 0.75 * (1 - t * t) ** 0.9 - side * tilt * by * t

            up = _curve(ex - ax, ex + ax, upper)
            lo = _curve(ex - ax, ex + ax, lower)
            d.polygon(up + lo[::-1], fill=_rgba((238, 234, 228)))
            ir = by * 1.05
            ix = ex + self.gaze * ax * 0.5
            iy = ey + by * 0.08
            d.ellipse([ix - ir * sq, iy - ir, ix + ir * sq, iy + ir], fill=_rgba(np.array(iris_rgb) * 0.6))
            d.ellipse([ix - ir * 0.8 * sq, iy - ir * 0.8, ix + ir * 0.8 * sq, iy + ir * 0.8], fill=_rgba(iris_rgb))
            pr = ir * 0.42
            d.ellipse([ix - pr * sq, iy - pr, ix + pr * sq, iy + pr], fill=_rgba((12, 10, 10)))
            hl = ir * 0.22
            hx, hy = ix - ir * 0.35 * self.light_dir - ir * 0.1, iy - ir * 0.4
            d.ellipse([hx - hl, hy - hl, hx + hl, hy + hl], fill=_rgba((255, 255, 255), 0.9))
            # lids: cover what lies outside the almond with skin, then line the upper lid
            xl, xr = ex - ax * 1.05, ex + ax * 1.05
            d.polygon(up + [(xr, up[-1][1]), (xr, ey - by * 3), (xl, ey - by * 3), (xl, up[0][1])], fill=_rgba(skin))
            d.polygon(
                lo + [(xr, lo[-1][1]), (xr, ey + by * 2.2), (xl, ey + by * 2.2), (xl, lo[0][1])], fill=_rgba(skin)
            )
            d.line(up, fill=_rgba((30, 22, 20), 0.95), width=int(max(1, by * 0.28)), joint="curve")
            d.line(lo, fill=_rgba(skin_dark * 0.8, 0.6), width=int(max(1, by * 0.08)))
            crease = _curve(
                ex - ax * 0.9, ex + ax * 0.9, lambda t, ey=ey, by=by: ey - by * 1.45 * (1 - t * t) ** 0.6 - by * 0.15
            )
            d.line(crease, fill=_rgba(skin_dark, 0.45 + 0.2 * st[29]), width=int(max(1, by * 0.12)))
            if age > 0.3:  # bags and crow's feet
                w = (age - 0.3) / 0.7
                bag = _curve(
                    ex - ax * 0.7, ex + ax * 0.7, lambda t, ey=ey, by=by: ey + by * 1.5 + by * 0.5 * (1 - t * t)
                )
                d.line(bag, fill=_rgba(skin_dark, 0.5 * w), width=int(max(1, by * 0.12)))
                ox = ex + side * ax * 1.1
                for k in (-1, 0, 1):
                    d.line(
                        [(ox, ey + k * by * 0.4), (ox + side * ax * 0.35, ey + k * by * 0.9)],
                        fill=_rgba(skin_dark, 0.55 * w),
                        width=int(max(1, self.lw)),
                    )

    def brows(self) -> None:
        h, hh = self.h, self.hh
        thickness = (0.05 + 0.04 * self.st[31]) * (1.05 - 0.3 * self.a.age)
        for side in (-1, 1):
            ex, _, ax, _, _ = self.eye_centres[(side + 1) // 2]
            inner_x = ex - side * ax * 1.05
            outer_x = ex + side * ax * 1.15
            t = np.linspace(0, 1, 10)
            xs = inner_x + (outer_x - inner_x) * t
            arch = hh * 0.07 * np.sin(np.pi * (0.2 + 0.8 * t) ** 0.8)
            base = h.cy + self.brow_v * hh - arch
            thick = thickness * hh * (1 - 0.55 * t) * (0.8 + 0.4 * (1 - t))
            top = list(zip(xs, base - thick / 2, strict=True))
            bot = list(zip(xs, base + thick / 2, strict=True))[::-1]
            self.d.polygon(top + bot, fill=_rgba(self.brow_col, 0.92))

    def nose(self) -> None:
        h, d, hw, hh, lw = self.h, self.d, self.hw, self.hh, self.lw
        skin, skin_dark = self.skin, self.skin_dark
        nose_w = (0.13 + 0.05 * self.st[13]) * (0.9 + 0.2 * self.a.age)
        nx = h.cx + float(h.turn(0.0, 1.25)) * hw
        ny = h.cy + self.nose_v * hh
        shade = -1 if self.light_dir > 0 else 1  # the side of the bridge away from the light
        d.line(
            [
                (nx + shade * nose_w * hw * 0.5 - math.sin(h.beta) * hw * 0.1, h.cy + (self.eye_v + 0.08) * hh),
                (nx + shade * nose_w * hw * 0.7, ny - hh * 0.05),
            ],
            fill=_rgba(skin_dark, 0.35),
            width=int(max(1, lw * 1.5)),
        )
        d.ellipse(
            [nx - nose_w * hw * 0.7, ny - hh * 0.07, nx + nose_w * hw * 0.7, ny + hh * 0.04],
            fill=_rgba(skin * 1.04, 0.8),
        )
        for side in (-1, 1):  # nostrils
            sx = nx + side * nose_w * hw * 0.45 * h.squeeze(side * 0.15)
            d.ellipse(
                [sx - nose_w * hw * 0.28, ny - hh * 0.005, sx + nose_w * hw * 0.28, ny + hh * 0.035],
                fill=_rgba(skin_dark * 0.55, 0.85),
            )
        box = [nx - nose_w * hw, ny - hh * 0.06, nx + nose_w * hw, ny + hh * 0.06]
        d.arc(box, 20, 160, fill=_rgba(skin_dark, 0.5), width=int(max(1, lw)))

    def skin_marks(self) -> None:
        """Blush, forehead lines, smile folds and age spots."""
        a, h, d, st, hw, lw = self.a, self.h, self.d, self.st, self.hw, self.lw
        skin, skin_dark, age = self.skin, self.skin_dark, a.age
        blush = 0.15 + 0.2 * st[29]
        for side in (-1, 1):
            bx, by = h.pt(float(h.turn(side * 0.55)), 0.32 - 0.05 * a.smile)
            r = hw * 0.2
            d.ellipse(
                [bx - r, by - r * 0.7, bx + r, by + r * 0.7], fill=_rgba(skin * np.array([1.05, 0.85, 0.85]), blush)
            )
        if age > 0.25:
            w = (age - 0.25) / 0.75
            for k in range(2 + int(st[19] * 3)):
                fv = self.eye_v - 0.38 - 0.09 * k
                if fv < self.hairline_v + 0.05:
                    break
                pts = h.xy(
                    np.linspace(-0.45, 0.45, 10) + math.sin(h.beta) * 0.4,
                    fv - 0.03 * np.cos(np.linspace(-1.4, 1.4, 10)),
                )
                d.line(pts, fill=_rgba(skin_dark, 0.45 * w), width=int(max(1, lw)))
        fold = max(0.0, (age - 0.35) / 0.65) * 0.6 + 0.25 * a.smile
        if fold > 0.05:
            for side in (-1, 1):
                us = np.array([0.2, 0.3, 0.38, 0.42]) * side
                vs = np.array([self.nose_v - 0.02, self.nose_v + 0.08, self.mouth_v, self.mouth_v + 0.1])
                pts = h.xy(h.turn(us * (1 + 0.1 * a.smile)), vs)
                d.line(pts, fill=_rgba(skin_dark, min(0.6, fold)), width=int(max(1, lw * 1.5)), joint="curve")
        if age > 0.7:
            rng = self.rs[3]
            for _ in range(int(2 + 5 * (age - 0.7) / 0.3)):
                su, sv = rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.1)
                px, py = h.pt(float(h.turn(su)), sv)
                r = hw * rng.uniform(0.015, 0.03)
                d.ellipse([px - r, py - r, px + r, py + r], fill=_rgba(skin_dark, 0.3))

    def beard(self) -> None:
        """Everything on the lower face below a line from the ears past the cheeks to the upper lip."""
        a, h = self.a, self.h
        if a.beard <= 0:
            return
        colour = hair_colour(a.hair_darkness, a.hair_redness, self.greyness) * 0.85
        reach = 0.15 + 0.2 * (a.beard > 0.55)
        nv = self.nose_v
        line_u = np.array([-1.0, -0.75, -0.45, -0.22, 0.0, 0.22, 0.45, 0.75, 1.0])
        cheek = nv + 0.15 - reach * 0.2
        jaw = 0.3 + reach * 0.3
        line_v = np.array([0.12, jaw, cheek, nv + 0.08, nv + 0.1, nv + 0.08, cheek, jaw, 0.12])
        bottom = [(u, v) for u, v in zip(self.u_out, self.v_out, strict=True) if v > 0.1]
        bottom.sort(key=lambda p: -p[0])  # right to left along the jaw
        pts = h.xy(h.turn(line_u * 0.98), line_v) + h.xy([p[0] * 1.01 for p in bottom], [p[1] + 0.03 for p in bottom])
        self.fill(pts, colour, 0.35 + 0.6 * a.beard, solid=False)
        rng = self.rs[4]
        for _ in range(int(40 * a.beard)):  # texture
            su, sv = rng.uniform(-0.8, 0.8), rng.uniform(0.55, 1.0)
            px, py = h.pt(float(h.turn(su)), sv)
            ln = self.hh * 0.04
            self.d.line(
                [(px, py), (px + rng.uniform(-0.3, 0.3) * ln, py + ln)],
                fill=_rgba(colour * 0.7, 0.5 * a.beard),
                width=int(max(1, self.lw)),
            )

    def mouth(self) -> None:
        a, h, d, st, hw, hh, lw = self.a, self.h, self.d, self.st, self.hw, self.hh, self.lw
        mx = h.cx + float(h.turn(0.0, 1.08)) * hw
        my = h.cy + self.mouth_v * hh
        mw = (0.28 + 0.1 * st[15]) * (1 + 0.18 * a.smile) * hw * (0.85 + 0.15 * h.squeeze(0.0))
        curve = (a.smile - 0.2) * hh * 0.13
        op = a.mouth_open * hh * 0.16
        lip = hh * (0.025 + 0.025 * st[9]) * (1.1 - 0.4 * a.age)
        lip_col = _lerp(self.skin, (190, 70, 80), 0.35 + 0.3 * st[8]) * (0.9 if a.skin_tone > 0.6 else 1.0)
        shift = math.sin(h.beta) * mw * 0.15

        def centre(t):
            return my - curve * t * t

        def upper_in(t):
            return centre(t) - op * 0.3 * (1 - t * t)

        def lower_in(t):
            return centre(t) + op * (1 - t * t) ** 0.8

        def upper_out(t):
            return upper_in(t) - lip * (1 - t * t) ** 0.6 * (1 - 0.25 * math.exp(-t * t * 40))  # cupid's bow

        x0, x1 = mx - mw + shift, mx + mw + shift
        ui = _curve(x0, x1, upper_in, 20)
        li = _curve(x0, x1, lower_in, 20)
        uo = _curve(x0, x1, upper_out, 20)
        lo = _curve(x0, x1, lambda t: lower_in(t) + lip * 1.5 * (1 - t * t) ** 0.7, 20)
        if a.mouth_open > 0.02:
            d.polygon(ui + li[::-1], fill=_rgba((70, 20, 25)))
            if a.smile > 0.35:
                tx0, tx1 = x0 + mw * 0.25, x1 - mw * 0.25
                teeth = _curve(tx0, tx1, lambda t: upper_in(t) + op * 0.35 * (1 - t * t), 12)
                d.polygon(_curve(tx0, tx1, upper_in, 12) + teeth[::-1], fill=_rgba((235, 232, 222)))
        d.polygon(uo + ui[::-1], fill=_rgba(lip_col * 0.92))
        d.polygon(li + lo[::-1], fill=_rgba(lip_col))
        d.line(ui, fill=_rgba(lip_col * 0.45, 0.9), width=int(max(1, lw * 1.2)))
        r = lw * 1.5
        for cx in (x0, x1):  # corners
            d.ellipse([cx - r, centre(1) - r, cx + r, centre(1) + r], fill=_rgba(self.skin_dark, 0.5))

    def front_hair(self) -> None:
        """A cap over the crown down to a hairline, an optional fringe, and side locks for long hair."""
        a, h, st = self.a, self.h, self.st
        volume, shift, part, wave = self.volume, self.hair_shift, self.part, self.wave
        u_out, v_out, length, end = self.u_out, self.v_out, self.length, self.hair_end_v
        n = 41
        phi = np.linspace(-np.pi / 2, np.pi / 2, n)
        cap_u = volume * np.sign(np.sin(phi)) * np.abs(np.sin(phi)) ** 0.8 + shift
        cap_v = -(1.0 + (volume - 1.0) * 1.5) * np.abs(np.cos(phi)) ** 0.9 + _wobble(self.rs[5], n, wave * 0.25, 2.0)
        side_v = -0.2 + 0.35 * min(length * 4, 1.0)
        outer = [h.pt(-volume + shift, side_v)] + h.xy(cap_u, cap_v) + [h.pt(volume + shift, side_v)]
        # hairline: from the right temple across the forehead to the left temple, lowered by the fringe
        hl_u = np.linspace(1, -1, n)
        hl_v = self.hairline_v + 0.25 * np.abs(hl_u) ** 3 - 0.04 * np.exp(-((hl_u - part) ** 2) * 30)
        if a.bangs > 0:
            fringe_v = self.hairline_v + a.bangs * (self.brow_v - 0.05 - self.hairline_v)
            jag = 0.04 * np.abs(np.sin(hl_u * (9 + 6 * st[17]) + self.rs[6].random() * 6))
            inside = np.abs(hl_u) < 0.9
            hl_v = np.where(inside, np.maximum(hl_v, fringe_v - jag - 0.06 * hl_u**2), hl_v)
        inner = [h.pt(_width_at(u_out, v_out, side_v, 1) * 0.98, side_v)]
        inner += h.xy(h.turn(hl_u * 0.95), hl_v)
        inner += [h.pt(_width_at(u_out, v_out, side_v, -1) * 0.98, side_v)]
        self.fill(outer + inner, self.hair)
        if length > 0.25:  # side locks in front of the ears and shoulders
            for side in (-1, 1):
                vs = np.linspace(-0.45, end, 18)
                cap_half = np.interp(vs, cap_v[n // 2 :], np.abs(cap_u[n // 2 :] - shift))
                cap_half = np.where(vs >= 0, volume, cap_half)
                inner_u = np.array([_width_at(u_out, v_out, min(v, 0.95), side) for v in vs])
                inner_u = inner_u - side * (0.12 + 0.1 * st[18]) * _smooth((vs + 0.3) / 0.5) * (vs < 1.0)
                inner_u = np.where(vs > 1.0, side * (0.5 + 0.1 * (vs - 1.0)) + side * self.neck_w * 0.3, inner_u)
                # beside the face the locks lie on the head and turn with it: the far one slides out of
                # view and the near one over the side of the head
                turned = np.asarray(h.turn(inner_u))
                follow = 0.8 if side * h.beta > 0 else 0.3
                inner_u = inner_u + (turned - inner_u) * follow * (1 - _smooth((vs - 0.3) / 0.6))
                grow = 0.1 * _smooth((vs + 0.45) / 0.6) + 0.22 * _smooth((vs - 0.3) / 1.5)
                outer_u = side * (cap_half + grow + _wobble(self.rs[7], len(vs), wave, 1.5) * _smooth(vs / 0.5))
                vin = vs.copy()
                vin[-1] -= 0.1  # the ends taper outwards in a few uneven tips
                f = np.array([0.2, 0.45, 0.7, 0.9])
                tip_u = inner_u[-1] + shift * 0.5 + f * (outer_u[-1] - inner_u[-1] + shift * 0.5)
                tip_v = end + np.array([0.0, 0.08, 0.02, 0.1]) * (0.5 + self.rs[7].random(4))
                pts = h.xy(inner_u + shift * 0.5, vin) + h.xy(tip_u, tip_v)
                pts += h.xy(outer_u + shift, vs)[::-1]
                self.fill(pts, self.hair)
        # strands for texture
        strand_col = _lerp(self.hair, (255, 255, 255), 0.18) if a.hair_darkness > 0.5 else self.hair * 0.8
        for _ in range(14):
            su = self.rs[5].uniform(-0.8, 0.8)
            pts = h.xy(
                [su * volume + shift, su * 1.1 + part * 0.2, su * 1.15 + shift],
                [-1.0 - (volume - 1), -0.85, self.hairline_v - 0.02],
            )
            self.d.line(pts, fill=_rgba(strand_col, 0.35), width=int(max(1, self.lw)), joint="curve")

    def glasses(self) -> None:
        a, h, d, st, hw, hh = self.a, self.h, self.d, self.st, self.hw, self.hh
        if a.eyeglasses < 0.5:
            return
        frame = _rgba(_palette(((20, 20, 20), (90, 50, 30), (150, 150, 160), (120, 30, 30)), st[28]))
        tint = _rgba((30, 40, 50), 0.12 + 0.25 * st[30] if st[31] < 0.85 else 0.8)  # a few are sunglasses
        fw = int(max(2, hw * (0.025 + 0.03 * st[22])))
        lens = []
        for ex, ey, _, _, sq in self.eye_centres:
            lwid, lhgt = hw * 0.27 * sq, hh * 0.12
            box = [ex - lwid, ey - lhgt * 0.9, ex + lwid, ey + lhgt * 1.1]
            lens.append(box)
            if st[21] > 0.5:
                d.ellipse(box, fill=tint, outline=frame, width=fw)
            else:
                d.rounded_rectangle(box, fill=tint, outline=frame, width=fw)
        (l0, _, l1, _), (r0, _, r1, _) = lens
        by = (lens[0][1] + lens[0][3]) / 2 - hh * 0.03
        d.line([(l1, by), ((l1 + r0) / 2, by - hh * 0.02), (r0, by)], fill=frame, width=fw, joint="curve")
        for side, x_edge in ((-1, l0), (1, r1)):  # temples, where the face extends past the lens
            ear_x = h.cx + _width_at(self.u_out, self.v_out, self.eye_v, side) * hw
            if (side > 0 and ear_x > x_edge) or (side < 0 and ear_x < x_edge):
                d.line([(x_edge, by), (ear_x, by + hh * 0.02)], fill=frame, width=fw)

    # --- light ------------------------------------------------------------------------------------

    def finish(self, res: int) -> Image.Image:
        """Reduce to ``res`` and shade the head as an ellipsoid lit by one key light plus ambient light;
        the background gets a milder version of the same light."""
        h, st, ss = self.h, self.st, self.S // res
        img = self.scene.resize((res, res), Image.LANCZOS, reducing_gap=None)
        mask = self.mask.resize((res, res), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32)
        yy, xx = (np.mgrid[0:res, 0:res].astype(np.float32) + 0.5) * ss
        # undo the tilt to get head-local coordinates
        r = math.radians(self.roll_deg)
        px, py = self.pivot
        dx, dy = xx - px, yy - py
        lx = px + dx * math.cos(r) + dy * math.sin(r)
        ly = py - dx * math.sin(r) + dy * math.cos(r)
        nx = (lx - h.cx) / (h.hw * 1.15)
        ny = (ly - h.cy) / (h.hh * 1.2)
        rr = np.sqrt(nx * nx + ny * ny)
        k = np.where(rr > 0.98, 0.98 / np.maximum(rr, 1e-6), 1.0)
        nx, ny = nx * k, ny * k
        # below the chin: the neck (and long hair) as a vertical cylinder, partly in the chin's shadow
        below = (ly - h.cy) / h.hh > 0.95
        nx = np.where(below, np.clip((lx - h.cx) / (0.6 * h.hw), -0.95, 0.95), nx)
        ny = np.where(below, 0.0, ny)
        nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0, 1))
        ang = math.radians((self.a.lighting - 0.5) * 2 * MAX_LIGHT_DEG)
        L = np.array([math.sin(ang), -0.35, math.cos(ang)])
        L /= np.linalg.norm(L)
        diffuse = np.clip(nx * L[0] + ny * L[1] + nz * L[2], 0, 1)
        ambient = 0.38 + 0.12 * st[11]
        shade_head = (ambient + (1 - ambient) * 1.12 * diffuse) * np.where(below, 0.88, 1.0)
        shade_bg = 1.0 + 0.18 * math.sin(ang) * (xx / (res * ss) - 0.5) * 2
        m = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
        shade = m * shade_head[..., None] + (1 - m) * shade_bg[..., None]
        out = arr * shade * (0.92 + 0.16 * st[12])
        out += self.rs[8].normal(0.0, 1.5 * st[10], size=out.shape).astype(np.float32)
        return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")


def render_face(attrs: FaceAttributes, res: int) -> Image.Image:
    """Draw one portrait as an RGB image of ``res`` × ``res`` pixels (8 to 4096)."""
    if not 8 <= int(res) <= 4096:
        raise InputError(f"resolution must be between 8 and 4096 pixels (got {res})")
    if len(attrs.style) < N_STYLE:
        raise InputError(f"FaceAttributes.style needs {N_STYLE} values (got {len(attrs.style)})")
    res = int(res)
    p = _Portrait(attrs, res * _supersample(res))
    p.start()
    # back to front
    p.back_hair()
    p.neck_and_ears()
    p.face()
    p.eyes()
    p.brows()
    p.nose()
    p.skin_marks()
    p.beard()
    p.mouth()
    p.front_hair()
    p.glasses()
    p.neckline()
    return p.finish(res)
