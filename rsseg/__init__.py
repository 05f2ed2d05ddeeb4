"""rsseg: land-cover segmentation of huge georeferenced orthophotos."""

__all__ = ["__version__"]


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
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
