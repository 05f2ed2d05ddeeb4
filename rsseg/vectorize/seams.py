"""Join polygons cut by the block grid back into the polygons of the whole raster.

Blocks are polygonized one at a time in *pixel coordinates* (integer vertices, so
every union below is exact). Before polygonizing, each block looks one pixel
across each interior seam: a pair of same-class pixels facing each other across a
seam (or diagonally, with 8-connectivity) is a *link*. A polygon holding no linked
pixel is complete and written at once; the others are *deferred* together with
their links.

Both blocks of a seam see the same pixel pair, so they compute the same link
key. After each row of blocks (a band), deferred pieces that share a key belong
to one component; the pieces of each component are dissolved into one polygon
(8-connectivity: a MultiPolygon when its parts only touch at corners). A
component with a link key no piece has matched yet reaches into the next band
and stays open; every other component is final. Memory therefore holds one band
of blocks plus the components crossing the current band seam.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

# Direction codes of the higher pixel of a link, seen from the lower (row-major) one.
_DIRECTION_CODE = {(0, 1): 0, (1, -1): 1, (1, 0): 2, (1, 1): 3}


@dataclass
class Pieces:
    """Polygons in pixel coordinates with their class and confidence sums."""

    geoms: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    class_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    conf_sums: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.geoms)

    def select(self, keep: np.ndarray) -> "Pieces":
        return Pieces(self.geoms[keep], self.class_ids[keep], self.conf_sums[keep])

    @staticmethod
    def concat(items: list["Pieces"]) -> "Pieces":
        items = [p for p in items if len(p)]
        if not items:
            return Pieces()
        if len(items) == 1:
            return items[0]
        return Pieces(np.concatenate([p.geoms for p in items]),
                      np.concatenate([p.class_ids for p in items]),
                      np.concatenate([p.conf_sums for p in items]))


def link_keys(rows_a: np.ndarray, cols_a: np.ndarray, rows_b: np.ndarray, cols_b: np.ndarray,
              width: int) -> np.ndarray:
    """A key per pixel pair (a, b) that is the same whichever side computes it."""
    ia = rows_a.astype(np.int64) * width + cols_a
    ib = rows_b.astype(np.int64) * width + cols_b
    swap = ib < ia
    lo = np.where(swap, ib, ia)
    d_row = np.where(swap, rows_a - rows_b, rows_b - rows_a)
    d_col = np.where(swap, cols_a - cols_b, cols_b - cols_a)
    code = np.zeros(len(lo), dtype=np.int64)
    for (dr, dc), value in _DIRECTION_CODE.items():
        code[(d_row == dr) & (d_col == dc)] = value
    return lo * 4 + code


class SeamMerger:
    """Collect seam-crossing pieces band by band and release finished components."""

    def __init__(self, connectivity: int = 4):
        if connectivity not in (4, 8):
            raise ValueError("connectivity must be 4 or 8")
        self.connectivity = connectivity
        self._pieces: list[Pieces] = []   # open components first, then this band's pieces
        self._keys: list[np.ndarray] = []  # link keys ...
        self._owners: list[np.ndarray] = []  # ... and the index of the piece holding each
        self._count = 0

    @property
    def open_count(self) -> int:
        return self._count

    def defer(self, pieces: Pieces, keys: np.ndarray, piece_index: np.ndarray) -> None:
        """Keep ``pieces``; ``keys[k]`` is a link held by ``pieces[piece_index[k]]``."""
        if not len(pieces):
            return
        self._pieces.append(pieces)
        self._keys.append(np.asarray(keys, dtype=np.int64))
        self._owners.append(np.asarray(piece_index, dtype=np.int64) + self._count)
        self._count += len(pieces)

    def finish_band(self, last: bool = False) -> Pieces:
        """Dissolve connected pieces; keep components with unmatched links, return the rest.

        After the ``last`` band nothing can continue, so everything is returned.
        """
        if not self._count:
            return Pieces()
        pool = Pieces.concat(self._pieces)
        keys = np.concatenate(self._keys)
        owners = np.concatenate(self._owners)
        component = _components(self._count, keys, owners)
        merged = self._dissolve(pool, component)
        # A key seen once links to a pixel of a block not read yet: that component continues.
        unique, first, counts = np.unique(keys, return_index=True, return_counts=True)
        pending = counts == 1
        open_keys = unique[pending]
        open_owner = component[owners[first[pending]]]
        is_open = np.zeros(len(merged), dtype=bool)
        if not last:
            is_open[open_owner] = True
        self._reset()
        still_open = merged.select(is_open)
        renumber = np.cumsum(is_open) - 1
        if not last:
            self.defer(still_open, open_keys, renumber[open_owner])
        done = merged.select(~is_open)
        # Drop the collinear vertices the seams left behind (tolerance 0 changes no shape).
        done.geoms = np.asarray(shapely.simplify(done.geoms, 0.0, preserve_topology=False),
                                dtype=object)
        return done

    def _reset(self) -> None:
        self._pieces, self._keys, self._owners, self._count = [], [], [], 0

    def _dissolve(self, pool: Pieces, component: np.ndarray) -> Pieces:
        """One geometry per component: the union of its pieces."""
        n = int(component.max()) + 1
        order = np.argsort(component, kind="stable")
        bounds = np.searchsorted(component[order], np.arange(n + 1))
        geoms = np.empty(n, dtype=object)
        class_ids = np.empty(n, dtype=np.int64)
        for c in range(n):
            members = order[bounds[c]:bounds[c + 1]]
            class_ids[c] = pool.class_ids[members[0]]
            if len(members) == 1:
                geoms[c] = pool.geoms[members[0]]
            else:
                geoms[c] = self._union(pool.geoms[members])
        sums = np.bincount(component, weights=pool.conf_sums, minlength=n)
        return Pieces(geoms, class_ids, sums)

    def _union(self, geoms: np.ndarray):
        union = shapely.union_all(geoms)
        # 4-links share an edge, so a 4-connected component dissolves into one polygon;
        # with 8-connectivity, parts meeting at a corner stay a MultiPolygon.
        if self.connectivity == 4 and shapely.get_type_id(union) != shapely.GeometryType.POLYGON:
            raise RuntimeError("4-connected component dissolved into several polygons")
        return union


def _components(n: int, keys: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Dense component label per piece; pieces sharing a link key are connected."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    order = np.argsort(keys, kind="stable")
    k, o = keys[order], owners[order]
    same = k[1:] == k[:-1]
    a, b = o[:-1][same], o[1:][same]
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)
