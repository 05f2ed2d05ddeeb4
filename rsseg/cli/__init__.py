"""The ``rsseg`` command line: a thin shell over the library.

One module per command (``rsseg/cli/<command>.py``), shared options in
:mod:`rsseg.cli.options`. Commands are imported lazily so ``rsseg --help``
and ``rsseg --version`` do not pay for importing torch.

Error contract: a :class:`rsseg.errors.RssegError` (or an I/O error) becomes one
line on stderr and exit status 1; usage errors (click's, :class:`rsseg.errors.UsageError`) exit 2; Ctrl-C / SIGTERM exit
130 / 143. A traceback is printed only with ``--debug`` (or ``RSSEG_DEBUG=1``).
"""

from __future__ import annotations

import importlib.util  # binds importlib too; a bare `import importlib` leaves .util unset
import os
import signal
import sys
import warnings

import click

# command name -> "module:function". A command whose module is absent is not listed.
COMMANDS = {
    "synth": "rsseg.cli.synth:synth",
    "predict": "rsseg.cli.predict:predict",
    "models": "rsseg.cli.models:models",
    "export": "rsseg.cli.export:export",
    "vectorize": "rsseg.cli.vectorize:vectorize",
    "score": "rsseg.cli.score:score",
    "train": "rsseg.cli.train:train",
    "batch": "rsseg.cli.batch:batch",
    "batch-status": "rsseg.cli.batch_status:batch_status",
    "demo": "rsseg.cli.demo:demo",
}


def _show_version(ctx, param, value):
    # Not click.version_option(__version__): reading the version from the package
    # metadata costs ~40 ms, which every command would pay at start-up.
    if not value or ctx.resilient_parsing:
        return
    from rsseg import __version__

    click.echo(f"rsseg, version {__version__}")
    ctx.exit()


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name, target in COMMANDS.items()
                if importlib.util.find_spec(target.split(":")[0]) is not None]

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        if importlib.util.find_spec(module) is None:
            return None
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx, args):
        # `rsseg batch status OUT` is `rsseg batch-status OUT` (unless a tile file is
        # named "status": then it stays a batch over that file).
        if args[:2] == ["batch", "status"] and not os.path.exists("status"):
            return "batch-status", self.get_command(ctx, "batch-status"), args[2:]
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_show_version, help="Show the version and exit.")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
              help="Show full tracebacks on errors.")
def cli():
    """rsseg: land-cover maps from huge georeferenced orthophotos."""


class Interrupted(BaseException):
    """Raised from the SIGTERM handler so that cleanup (temporary outputs) runs."""


def _on_sigterm(signum, frame):
    raise Interrupted()


def _debug_requested(argv) -> bool:
    return "--debug" in argv or os.environ.get("RSSEG_DEBUG", "") not in ("", "0")


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    if debug:
        os.environ["RSSEG_DEBUG"] = "1"
    else:
        # GDAL prints its own warnings ("Warning 1: TIFFReadDirectory: ...") on stderr; errors
        # that matter reach us as exceptions. Keep stderr to rsseg's lines (--debug shows all).
        os.environ.setdefault("CPL_LOG", os.devnull)
        warnings.showwarning = _one_line_warning
    # NumPy's OpenBLAS starts a thread per core that spins for a while after the import
    # (0.14 CPU-s per run measured on 2 cores, taken from GDAL and torch); rsseg never calls
    # NumPy's BLAS (torch brings its own MKL). Dask workers inherit it. Before any import
    # of NumPy: `import rsseg.cli` imports none.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (embedded use)
        pass
    sys.exit(run(argv, debug))


def run(argv, debug: bool = False) -> int:
    """Run the CLI and map every failure to an exit status and one stderr line."""
    from rsseg.errors import RssegError, UsageError

    try:
        rv = cli.main(args=argv, prog_name="rsseg", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        _fail("interrupted", debug)
        return 130
    except Interrupted:
        _fail("terminated", debug)
        return 143
    except UsageError as exc:
        _fail(f"usage error: {exc}", debug)
        return 2
    except RssegError as exc:
        _fail(f"error: {exc}", debug)
        return 1
    except OSError as exc:
        msg = _rasterio_message(exc)  # rasterio's I/O errors are OSErrors too
        if msg is None:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            msg = f"{where}{exc.strerror or exc}"
        _fail(f"error: {msg}", debug)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        msg = _rasterio_message(exc)
        if msg is not None:
            _fail(f"error: {msg}", debug)
            return 1
        _fail(f"internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(rerun with --debug for a traceback)", debug)
        return 1


def _rasterio_message(exc: Exception) -> str | None:
    mod = type(exc).__module__ or ""
    if mod.startswith(("rasterio", "pyogrio", "fiona")):
        cause = exc.__cause__ or exc.__context__
        if cause is not None and "previous exception" in str(exc):
            exc = cause  # rasterio's "Read failed. See previous exception": GDAL's own words
        return _one_line(exc)
    return None


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings as one ``rsseg: warning:`` line (no source line; --debug shows it)."""
    click.echo(f"rsseg: warning: {_one_line(message)}", err=True)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _fail(message: str, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc()
    click.echo(f"rsseg: {message}", err=True)
