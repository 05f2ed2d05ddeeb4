"""The mosaic outputs of ``rsseg batch``: ``mosaic.vrt`` over the finished class rasters,
``confidence.vrt`` (``--probs``) and the merged GeoPackage (``--vector``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rsseg.batch.inputs import Tile, aligned, layout
from rsseg.batch.jobdb import JobDB, digest, now

if TYPE_CHECKING:
    from rsseg.batch.driver import BatchOptions, BatchSummary

CONFIDENCE_DIR = "confidence"  # --probs: out/confidence/<stem>.tif and out/confidence.vrt


def vector_options(options: BatchOptions) -> dict:
    return {"simplify": options.simplify, "min_area": options.min_area}


def write_mosaics(plans, db: JobDB, summary: BatchSummary, out: Path,
                   options: BatchOptions, cluster, bar) -> None:
    """``mosaic.vrt`` over every finished class raster, and the merged GeoPackage."""
    vector_opts = vector_options(options)
    done = [p for p in plans if db.is_done(p.tile.path, p.checksum, out)]
    if not done:
        return
    base = done[0].tile
    members = [p for p in done if aligned(base, p.tile)]
    for p in done:
        if p not in members:
            bar.log(f"rsseg: warning: {p.tile.path} is on another grid than {base.path}; "
                    "its class raster is left out of mosaic.vrt")
    checksum = digest({"tiles": sorted((p.tile.path, p.checksum) for p in members),
                       "vector": vector_opts if options.vector else None})
    previous = db.mosaic
    vrt, gpkg, conf = out / "mosaic.vrt", out / "mosaic.gpkg", out / f"{CONFIDENCE_DIR}.vrt"
    up_to_date = previous.get("checksum") == checksum and vrt.is_file() and (
        not options.vector or gpkg.is_file()) and (not options.probs or conf.is_file())
    summary.mosaic = vrt
    summary.vector = gpkg if options.vector else None
    if up_to_date:
        if options.vector:
            bar.update(1)
        return
    _class_vrt(vrt, [p.tile for p in members], out)
    if options.probs:
        _confidence_vrt(conf, [p.tile for p in members], out)
        vector_opts = dict(vector_opts, probs=str(conf))
    if options.vector:
        _vector_mosaic(vrt, gpkg, vector_opts, cluster)
        bar.update(1)
    db.set_mosaic({"vrt": vrt.name, "vector": gpkg.name if options.vector else None,
                   "confidence": conf.name if options.probs else None, "tiles": len(members), "checksum": checksum, "run_id": summary.run_id,
                   "finished": now()})


def _mosaic_vrt(path: Path, tiles: list[Tile], folder: Path, meta: dict, nodata: int) -> None:
    """A VRT over ``folder/<stem>.tif`` of every tile, on the tiles' common grid."""
    from rsseg.io.vrt import VrtBand, VrtSource, write_mosaic_vrt

    offsets, width, height, transform = layout(tiles)
    sources = [VrtSource(str(folder / f"{t.stem}.tif"), col, row, t.width, t.height)
               for t, (col, row) in zip(tiles, offsets)]
    band = VrtBand("uint8", nodata, meta["description"], meta["colormap"], meta["band_tags"])
    write_mosaic_vrt(path, sources, width, height, tiles[0].crs, transform, [band],
                     tags=meta["tags"], relative=True)


def _confidence_vrt(path: Path, tiles: list[Tile], out: Path) -> None:
    from rsseg.io.cog import confidence_metadata
    from rsseg.predict.sinks import CONFIDENCE_NODATA

    _mosaic_vrt(path, tiles, out / CONFIDENCE_DIR, confidence_metadata(), CONFIDENCE_NODATA)


def _class_vrt(path: Path, tiles: list[Tile], out: Path) -> None:
    from rsseg.classes import NODATA
    from rsseg.io.cog import class_metadata, read_classes

    classes = read_classes(out / f"{tiles[0].stem}.tif")
    meta = class_metadata(classes) if classes else {"description": "class", "colormap": None,
                                                    "tags": {}, "band_tags": {}}
    _mosaic_vrt(path, tiles, out, meta, NODATA)


def _vector_mosaic(vrt: Path, gpkg: Path, vector_opts: dict, cluster) -> None:
    """The merged GeoPackage: the class mosaic vectorized in one streaming pass, its
    blocks polygonized on the cluster's workers (every thread busy, at most two blocks
    each in flight) while this process joins them across block seams, so polygons
    crossing tile borders come out dissolved, and writes the file."""
    from rsseg.vectorize.streaming import vectorize_raster

    on_cluster = {} if cluster is None else {"executor": cluster.client,
                                             "workers": cluster.workers * cluster.threads}
    vectorize_raster(str(vrt), str(gpkg), overwrite=True, progress="off", **on_cluster,
                     **vector_opts)
