"""rsseg QGIS plugin: a Processing provider that runs the rsseg command line.

The plugin never imports rsseg or torch; it runs the ``rsseg`` program of the
Python environment configured in its settings (see settings.py).
"""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    from .plugin import RssegPlugin

    return RssegPlugin(iface)
