"""Window-independent pseudo-random numbers for the synthetic scene generator.

Every value here is a pure function of (seed, key, global integer coordinates),
computed with integer hashing and elementwise IEEE arithmetic only (no
transcendental functions, whose SIMD and scalar code paths may differ in the
last bit). A pixel therefore gets the same value whatever window it is
rendered in, which is what makes scenes written with different block sizes
identical.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = 0x9E3779B97F4A7C15
_MUL_A = 0xBF58476D1CE4E5B9
_MUL_B = 0x94D049BB133111EB
_KEY_MUL = (0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD)
_U64 = (1 << 64) - 1


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: every input bit affects every output bit."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(_MUL_A)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(_MUL_B)
    return h ^ (h >> np.uint64(31))


def _as_u64(value) -> np.ndarray:
    # Negative lattice indices wrap (two's complement) instead of failing.
    return np.asarray(value, dtype=np.int64).astype(np.uint64)


def hash_u64(seed: int, key: int, *coords) -> np.ndarray:
    """64-bit hash of a seed, a stream key and up to four integer coordinate arrays."""
    start = ((int(seed) & _U64) * _GOLDEN + (int(key) & _U64) * _MUL_B) & _U64
    h = _mix(np.atleast_1d(np.uint64(start)))
    for i, c in enumerate(coords):
        h = _mix(h ^ (_as_u64(c) * np.uint64(_KEY_MUL[i])))
    return h


def to_unit(h: np.ndarray) -> np.ndarray:
    """Uniform float64 in [0, 1) from the top 53 bits of a hash."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def unit_scalar(seed: int, key: int, *coords: int) -> float:
    """One uniform number in [0, 1) for a tuple of integers."""
    return float(to_unit(hash_u64(seed, key, *coords))[0])


def value_noise(rows: np.ndarray, cols: np.ndarray, cell: int, seed: int, key: int) -> np.ndarray:
    """Smooth noise in [0, 1) on a lattice of ``cell`` pixels, for the grid rows x cols.

    ``rows`` and ``cols`` are 1-D arrays of global pixel indices. Lattice values
    are hashed from lattice coordinates and blended with a smoothstep, so the
    field is continuous across windows.
    """
    cell = max(1, int(cell))
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    ri, rf = np.divmod(rows, cell)
    ci, cf = np.divmod(cols, cell)
    r0, c0 = int(ri.min()), int(ci.min())
    lat_rows = np.arange(r0, int(ri.max()) + 2, dtype=np.int64)
    lat_cols = np.arange(c0, int(ci.max()) + 2, dtype=np.int64)
    lattice = to_unit(hash_u64(seed, key, lat_rows[:, None], lat_cols[None, :]))
    # Bilinear blending is separable: blend along columns on the few lattice
    # rows first, then along rows per pixel (float32 suffices for textures).
    wc = _smoothstep((cf + 0.5) / cell)
    ci = ci - c0
    along_cols = (lattice[:, ci] * (1.0 - wc) + lattice[:, ci + 1] * wc).astype(np.float32)
    wr = _smoothstep((rf + 0.5) / cell).astype(np.float32)[:, None]
    ri = ri - r0
    return along_cols[ri] * (np.float32(1.0) - wr) + along_cols[ri + 1] * wr


def fractal_noise(rows, cols, cell: int, seed: int, key: int, octaves: int = 3) -> np.ndarray:
    """Sum of value-noise octaves (cell, cell/2, ...), normalised to [0, 1)."""
    total = np.zeros((len(rows), len(cols)), np.float32)
    weight_sum = 0.0
    weight = 1.0
    for octave in range(octaves):
        octave_cell = max(1, int(cell) >> octave)
        total += np.float32(weight) * value_noise(rows, cols, octave_cell, seed, key * 16 + octave)
        weight_sum += weight
        weight *= 0.5
    return total / np.float32(weight_sum)


def pixel_noise(rows: np.ndarray, cols: np.ndarray, seed: int, key: int) -> np.ndarray:
    """Four independent uniform [0, 1) values per pixel, shape (4, rows, cols), float32."""
    rows = np.asarray(rows, np.int64)[:, None]
    cols = np.asarray(cols, np.int64)[None, :]
    h = hash_u64(seed, key, rows, cols)
    parts = h.astype("<u8").view("<u2").reshape(h.shape + (4,))
    return np.moveaxis(parts, -1, 0).astype(np.float32) * np.float32(1.0 / 65536.0)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)
