"""Coverage clean-up after polygonization: small-polygon merging and coverage simplification.

Both need every neighbour of a polygon, so they run on the finished polygon
coverage held in memory (vector data only: its size grows with the number of
polygon vertices in the scene, not with the raster's pixel count).
"""

from __future__ import annotations

import heapq

import numpy as np
import shapely

from rsseg.vectorize.seams import Pieces


def merge_small(pieces: Pieces, area_m2: np.ndarray, min_area: float) -> tuple[Pieces, int]:
    """Merge every polygon smaller than ``min_area`` into the neighbour sharing its longest border.

    Polygons are taken smallest first; a merged polygon that is still too small is
    taken again later. The absorbing neighbour keeps its class, so the coverage stays
    complete and free of overlaps. A small polygon with no neighbour sharing a
    border (an island in nodata) cannot be merged and is removed.

    Returns the surviving pieces and the number of isolated polygons removed.
    """
    n = len(pieces)
    geoms = pieces.geoms.copy()
    sums = pieces.conf_sums.copy()
    area = np.asarray(area_m2, dtype=np.float64).copy()
    owner = np.arange(n)  # union-find: index of the polygon that absorbed this one
    removed = np.zeros(n, dtype=bool)
    tree = shapely.STRtree(pieces.geoms)  # original shapes: their owners cover them
    heap = [(area[i], i) for i in np.flatnonzero(area < min_area)]
    heapq.heapify(heap)
    while heap:
        a, i = heapq.heappop(heap)
        if owner[i] != i or removed[i] or a != area[i] or a >= min_area:
            continue  # absorbed, removed, or a stale entry
        target = _longest_border_neighbour(i, geoms, tree, owner)
        if target < 0:
            removed[i] = True
            continue
        geoms[target] = shapely.union(geoms[target], geoms[i])
        sums[target] += sums[i]
        area[target] += area[i]
        owner[i] = target
        if area[target] < min_area:
            heapq.heappush(heap, (area[target], target))
    keep = (owner == np.arange(n)) & ~removed
    merged = Pieces(geoms[keep], pieces.class_ids[keep], sums[keep])
    return merged, int(removed.sum())


def _find(owner: np.ndarray, i: int) -> int:
    root = i
    while owner[root] != root:
        root = owner[root]
    while owner[i] != root:  # path compression
        owner[i], i = root, owner[i]
    return root


def _longest_border_neighbour(i: int, geoms: np.ndarray, tree: shapely.STRtree,
                              owner: np.ndarray) -> int:
    """Current polygon sharing the longest border with polygon ``i``; -1 if none."""
    candidates = {_find(owner, int(k)) for k in tree.query(geoms[i], predicate="intersects")}
    candidates.discard(i)
    if not candidates:
        return -1
    cand = np.array(sorted(candidates))
    shared = shapely.length(shapely.intersection(shapely.boundary(geoms[cand]),
                                                 shapely.boundary(geoms[i])))
    best = int(np.argmax(shared))  # ties: lowest index, deterministic
    return int(cand[best]) if shared[best] > 0 else -1


def simplify_coverage(map_geoms: np.ndarray, tolerance: float) -> np.ndarray:
    """Simplify polygons as a coverage: shared edges are simplified once, so no gaps or overlaps."""
    if not len(map_geoms) or tolerance <= 0:
        return map_geoms
    out = shapely.coverage_simplify(map_geoms, tolerance)
    return np.asarray(out, dtype=object)
