"""The ``eclip`` Typer application: one module per command group, registered here.

Each command parses options, calls :mod:`eclip.api`, and prints a summary. Any
:class:`~eclip.errors.EclipError` is printed as one red line, without a traceback, and the
command exits with status 2.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from eclip.cli import classify, cluster, dedupe, embed, evaluate, index, label, link, report, train
from eclip.cli.options import optional_ray_address
from eclip.errors import EclipError
from eclip.progress import console

app = typer.Typer(
    name="eclip",
    help="Find the same product across messy e-commerce catalogs: embed titles and images (MiniLM or any "
    "open_clip model, or one trained on your catalog with `eclip train`), search FAISS indexes, and group "
    "the matches. Reads CSV, Parquet and JSONL; writes Parquet plus a JSON manifest.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"eclip {version('eclip')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _global_options(
    wait: bool = typer.Option(
        False,
        "--wait",
        metavar="",
        help="When another eclip job is writing the same output directory, wait for it instead of stopping.",
    ),
    show_version: bool = typer.Option(
        False, "--version", metavar="", is_eager=True, callback=_print_version, help="Print eclip's version and exit."
    ),
) -> None:
    """Options for every command (before the command's name: eclip --wait dedupe ...)."""
    if wait:
        os.environ["ECLIP_WAIT"] = "1"


#: The command list's one-line summaries of commands whose docstrings open with a longer
#: sentence (the list shows a docstring's first paragraph; at 80 columns 62 characters fit).
SHORT_HELP = {
    "dedupe": "Deduplicate a catalog: every row gets a match group.",
    "classify": "Classify rows into categories: zero-shot, a probe, or both.",
    "report": "Write an HTML report with galleries, and a review CSV.",
}

app.command()(embed.embed)
app.command(short_help=SHORT_HELP["dedupe"])(dedupe.dedupe)
app.command()(link.link)
app.command()(train.train)
app.add_typer(index.index_app, name="index")
app.command()(cluster.cluster)
app.command(short_help=SHORT_HELP["classify"])(classify.classify)
app.command("filter-adult")(classify.filter_adult)
app.command(short_help=SHORT_HELP["report"])(report.report)
app.command("eval")(evaluate.eval_)
app.command()(label.label)
app.command()(label.learn)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # eclip draws its own progress bars
    warnings.showwarning = _show_warning
    _return_freed_memory()
    try:
        app(args=optional_ray_address(sys.argv[1:]), prog_name="eclip")  # also under python -m eclip
    except EclipError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        _interrupted()
        raise SystemExit(130) from None
    except SystemExit as exc:
        if exc.code == 130:  # typer turns Ctrl-C into a silent exit 130
            _interrupted()
        raise


def _return_freed_memory() -> None:
    """Fix glibc's mmap threshold at its 128 KiB default. glibc raises it after each large
    free (up to 32 MiB), so the many mid-size arrays of a large job then come from the heap
    and stay resident after they are freed; fixed, they are mapped and unmapped (``mallopt``,
    ``M_MMAP_THRESHOLD``; see glibc's manual). Measured at 1M rows: fitting the TF-IDF matrix
    left 0.9 GiB resident beyond the matrix, and none with the threshold fixed. Nothing
    happens off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _show_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """A library's warning as one yellow line of eclip's own (no file, line or source shown)."""
    from rich.markup import escape

    console.print(f"[yellow]warning: {escape(str(message).strip())}[/]", highlight=False, soft_wrap=True)


def _interrupted() -> None:
    console.print("[yellow]interrupted; rerun the same command to resume (finished work is kept).[/]", highlight=False)
