"""Geometric primitives of the synthetic scene, in metres.

Coordinates are scene metres: ``x`` east from the scene's left edge, ``y``
south from its top edge (the pixel grid's orientation). Each shape answers
``mask(X, Y, wobble)`` for broadcastable coordinate arrays of pixel centres
using only elementwise arithmetic and ``sqrt`` (exact in IEEE), so a pixel's
membership does not depend on the window it is evaluated in. Per-shape
constants (cos, sin of an angle) are computed once in Python, identically for
every window.
"""

from __future__ import annotations

import math

import numpy as np

BBox = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax


class Rect:
    """An oriented rectangle: centre, half-length ``hu`` along u = (cos, sin), half-width ``hv``."""

    __slots__ = ("cx", "cy", "hu", "hv", "cos", "sin")

    def __init__(self, cx: float, cy: float, hu: float, hv: float, cos: float, sin: float):
        self.cx, self.cy, self.hu, self.hv = float(cx), float(cy), float(hu), float(hv)
        norm = math.hypot(cos, sin)
        self.cos, self.sin = cos / norm, sin / norm

    def local(self, X, Y):
        dx = X - self.cx
        dy = Y - self.cy
        return dx * self.cos + dy * self.sin, dy * self.cos - dx * self.sin

    def mask(self, X, Y, wobble=None):
        u, v = self.local(X, Y)
        return (np.abs(u) <= self.hu) & (np.abs(v) <= self.hv)

    def corners(self) -> list[tuple[float, float]]:
        ux, uy = self.cos * self.hu, self.sin * self.hu
        vx, vy = -self.sin * self.hv, self.cos * self.hv
        return [(self.cx + su * ux + sv * vx, self.cy + su * uy + sv * vy)
                for su, sv in ((1, 1), (1, -1), (-1, -1), (-1, 1))]

    def bbox(self) -> BBox:
        return bbox_of(self.corners())

    def distance(self, x: float, y: float) -> float:
        """Euclidean distance from a point to the rectangle (0 inside)."""
        u, v = self.local(x, y)
        return math.hypot(max(abs(u) - self.hu, 0.0), max(abs(v) - self.hv, 0.0))

    def overlaps(self, other: "Rect", margin: float = 0.0) -> bool:
        """Separating-axis test, with both rectangles grown by ``margin``."""
        mine, theirs = self.corners(), other.corners()
        for ax, ay in ((self.cos, self.sin), (-self.sin, self.cos),
                       (other.cos, other.sin), (-other.sin, other.cos)):
            p1 = [x * ax + y * ay for x, y in mine]
            p2 = [x * ax + y * ay for x, y in theirs]
            if max(p1) + margin < min(p2) - margin or max(p2) + margin < min(p1) - margin:
                return False
        return True


class Polygon:
    """A convex polygon (vertices in either winding order)."""

    __slots__ = ("verts",)

    def __init__(self, verts):
        verts = [(float(x), float(y)) for x, y in verts]
        if _signed_area(verts) < 0:
            verts.reverse()
        self.verts = verts

    def mask(self, X, Y, wobble=None):
        inside = None
        n = len(self.verts)
        for k in range(n):
            ax, ay = self.verts[k]
            bx, by = self.verts[(k + 1) % n]
            side = (bx - ax) * (Y - ay) - (by - ay) * (X - ax) >= 0
            inside = side if inside is None else inside & side
        return inside

    def contains(self, x: float, y: float, margin: float = 0.0) -> bool:
        n = len(self.verts)
        for k in range(n):
            ax, ay = self.verts[k]
            bx, by = self.verts[(k + 1) % n]
            length = math.hypot(bx - ax, by - ay) or 1.0
            if ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) / length < margin:
                return False
        return True

    def bbox(self) -> BBox:
        return bbox_of(self.verts)


class Capsule:
    """All points within ``r`` of the segment a-b (roads, paths, swept tree shadows)."""

    __slots__ = ("ax", "ay", "bx", "by", "r", "dx", "dy", "inv_len2")

    def __init__(self, ax, ay, bx, by, r):
        self.ax, self.ay, self.bx, self.by, self.r = map(float, (ax, ay, bx, by, r))
        self.dx, self.dy = self.bx - self.ax, self.by - self.ay
        len2 = self.dx * self.dx + self.dy * self.dy
        self.inv_len2 = 1.0 / len2 if len2 > 0 else 0.0

    def along(self, X, Y):
        """Position along the segment, 0 at a and 1 at b (unclipped)."""
        return ((X - self.ax) * self.dx + (Y - self.ay) * self.dy) * self.inv_len2

    def mask(self, X, Y, wobble=None):
        t = np.clip(self.along(X, Y), 0.0, 1.0)
        ex = X - (self.ax + t * self.dx)
        ey = Y - (self.ay + t * self.dy)
        return ex * ex + ey * ey <= self.r * self.r

    def bbox(self) -> BBox:
        return (min(self.ax, self.bx) - self.r, min(self.ay, self.by) - self.r,
                max(self.ax, self.bx) + self.r, max(self.ay, self.by) + self.r)


class Disc:
    """A disc whose rim is perturbed by a window-independent noise field (``wobble``, in [0, 1))."""

    __slots__ = ("cx", "cy", "r", "roughness")

    def __init__(self, cx, cy, r, roughness=0.0):
        self.cx, self.cy, self.r, self.roughness = map(float, (cx, cy, r, roughness))

    def dist2(self, X, Y):
        dx = X - self.cx
        dy = Y - self.cy
        return dx * dx + dy * dy

    def mask(self, X, Y, wobble=None):
        limit = self.r * self.r
        if self.roughness and wobble is not None:
            limit = limit * (1.0 - self.roughness + 2.0 * self.roughness * wobble)
        return self.dist2(X, Y) <= limit

    def bbox(self) -> BBox:
        grow = self.r * math.sqrt(1.0 + self.roughness)
        return (self.cx - grow, self.cy - grow, self.cx + grow, self.cy + grow)


def bbox_of(points) -> BBox:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def convex_hull(points) -> list[tuple[float, float]]:
    """Andrew's monotone chain; used for the swept shadow of a rectangle."""
    pts = sorted(set(points))
    if len(pts) <= 2:
        return pts

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return lower[:-1] + upper[:-1]


def line_intersection(p, d, q, e):
    """Intersection of lines p + t d and q + s e (not parallel)."""
    denom = d[0] * e[1] - d[1] * e[0]
    t = ((q[0] - p[0]) * e[1] - (q[1] - p[1]) * e[0]) / denom
    return (p[0] + t * d[0], p[1] + t * d[1])


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _signed_area(verts) -> float:
    n = len(verts)
    return 0.5 * sum(verts[k][0] * verts[(k + 1) % n][1] - verts[(k + 1) % n][0] * verts[k][1]
                     for k in range(n))
