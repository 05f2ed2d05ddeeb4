"""rsseg: land-cover segmentation of huge georeferenced orthophotos.

The library entry points (``from rsseg import predict_scene, load_predictor,
PredictSettings``) are imported on first use, so ``rsseg --help`` does not pay for
torch or rasterio.
"""

_PREDICT = ("PredictSettings", "load_predictor", "predict_scene")
__all__ = ["__version__", *_PREDICT]


def __getattr__(name: str):
    # Looked up on first use only: importlib.metadata costs ~40 ms at every start-up.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("rsseg")
        except PackageNotFoundError:  # running from a source tree without install
            value = "0.0.0+unknown"
        globals()["__version__"] = value
        return value
    if name in _PREDICT:
        import rsseg.predict

        return getattr(rsseg.predict, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
