"""Zoom: show the network each window magnified (or reduced), as its training imagery was.

A network learns the size things have in pixels in its training imagery. A scene
with coarser pixels (a larger ground sampling distance) shows every house and road
smaller, and the network does worse on it; magnifying each window by
``scene GSD / training GSD`` before the forward pass, and bringing its class scores
back to the window's own grid, gives the network the sizes it knows. (Deepness asks
for the model's resolution for the same reason.) Measured on the unseen Dubai tile 7
with ``baff_skipnet.dubai-aerial-holdout7``: mIoU 0.566 at zoom 1, 0.601 at 1.25,
0.591 at 1.5, 0.585 at 0.75 (docs/cli/predict.md; the Dubai data states no GSD, and
these were tuned on that tile). ``--zoom auto`` takes the factor from the scene's pixel
size and the one a checkpoint records of its training imagery, when both are known.

Windows are resampled bilinearly (antialiased when reduced), scores bilinearly back
(a mean of probabilities stays one). The output grid, the tiling and the blend do not
change: only what the network sees of each window. It runs inside
:class:`~rsseg.predict.predictor.TorchPredictor` (on the device path too) and around
any other predictor through :class:`ZoomedPredictor`.
"""

from __future__ import annotations

import numpy as np

from .settings import ZOOM_RANGE, check_zoom


def auto_zoom(scene_gsd_m: float | None, model_gsd_m: float | None) -> tuple[float, str]:
    """``--zoom auto``: the scene's pixel size over the model's training imagery's, and a
    line saying what was chosen (1 when either is unknown). Out of :data:`ZOOM_RANGE`
    is an error: such a scene is not what the model was trained for."""
    if not scene_gsd_m or not model_gsd_m or scene_gsd_m < 0 or model_gsd_m < 0:
        unknown = "the scene's" if not scene_gsd_m or scene_gsd_m < 0 else "the weights' training"
        return 1.0, (f"--zoom auto: {unknown} pixel size is not known in metres; "
                     "the windows are shown as they are (zoom 1)")
    zoom = scene_gsd_m / model_gsd_m
    lo, hi = ZOOM_RANGE
    if not lo <= zoom <= hi:
        raise ValueError(f"--zoom auto: the scene's pixels ({scene_gsd_m:g} m) are {zoom:.3g} "
                         f"times the weights' training pixels ({model_gsd_m:g} m), outside "
                         f"{lo:g}-{hi:g}; resample the scene first")
    return zoom, (f"--zoom auto: {zoom:.3g} (scene {scene_gsd_m:g} m / training "
                  f"{model_gsd_m:g} m per pixel)")


def zoomed_size(pixels: int, zoom: float) -> int:
    """The side a ``pixels``-px window has once zoomed (at least 1)."""
    return max(1, int(round(pixels * zoom)))


def zoomed_scores(x, scores, zoom: float):
    """``scores`` (a callable on torch ``(N, C, h, w)``) of ``x`` zoomed by ``zoom``,
    resampled back to ``x``'s height and width."""
    import torch.nn.functional as F

    if zoom == 1.0:
        return scores(x)
    h, w = x.shape[-2:]
    size = (zoomed_size(h, zoom), zoomed_size(w, zoom))
    seen = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                         antialias=zoom < 1.0)
    y = scores(seen)
    return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False,
                         antialias=zoom > 1.0)


class ZoomedPredictor:
    """Any predictor (NumPy batches in, probabilities out) run on zoomed windows; what
    ``--zoom`` wraps around a predictor with no path of its own (ONNX Runtime, a
    library caller's callable)."""

    def __init__(self, predict, zoom: float):
        self.predict, self.zoom = predict, check_zoom(zoom)

    @property
    def num_classes(self) -> int | None:
        return getattr(self.predict, "num_classes", None)  # some learn it at the first call

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        def scores(view):
            out = self.predict(np.ascontiguousarray(view.numpy(), dtype=np.float32))
            return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        return np.ascontiguousarray(zoomed_scores(x, scores, self.zoom).numpy(), np.float32)

    def check_tile(self, tile: int) -> None:
        """A fixed-size backend is asked about the zoomed window it will get."""
        check = getattr(self.predict, "check_tile", None)
        if check is not None:
            check(zoomed_size(tile, self.zoom))
