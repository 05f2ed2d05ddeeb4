"""rsseg: land-cover segmentation of huge georeferenced orthophotos."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rsseg")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
