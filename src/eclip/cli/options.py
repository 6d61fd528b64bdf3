"""Option types that several commands share, declared once, and small parsing helpers.

Options are grouped into rich help panels by topic (input, model, matching, output...) and
carry short metavars, so that ``eclip COMMAND --help`` reads well at 80 columns.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from eclip.checks import Runtime, Vectors

if TYPE_CHECKING:
    from eclip.distributed import RayRunner

INPUT, MODEL, PERFORMANCE = "Input", "Model", "Performance"


def finite(param: typer.CallbackParam, value: Optional[float]) -> Optional[float]:
    """Callback of every float option (``typer.Option(..., callback=finite)``): refuses NaN and
    +/-infinity. Float parsing accepts "nan", "inf", "infinity" (and "1e400" overflows to inf);
    a one-sided ``min``/``max`` bound lets infinity through, and with click's float types NaN
    passes every bound (a comparison with NaN is false). ``None`` (an unset ``Optional``
    option) passes. tests/test_cli_numbers.py checks that every float option has it.

    Raises:
        typer.BadParameter: a non-finite value, e.g. "Invalid value for '--threshold': nan is
            not a finite number."
    """
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number.", param_hint=param.opts)
    return value


CatalogArg = Annotated[
    Path, typer.Argument(metavar="CATALOG", help="Catalog file: .csv, .tsv, .parquet or .jsonl/.ndjson.")
]
SourceArg = Annotated[
    Path, typer.Argument(metavar="SOURCE", help="Catalog file, or an embeddings directory from `eclip embed`.")
]
ModelOpt = Annotated[
    str,
    typer.Option(
        metavar="SPEC",
        rich_help_panel=MODEL,
        help="Model spec: minilm (bundled, offline), minilm-static (distilled from it: "
        "fastest), openclip:ARCH[:TAG|:CKPT], hf-hub:ORG/NAME or a folder.",
    ),
]
RuntimeOpt = Annotated[
    Runtime,
    typer.Option(
        metavar="NAME",
        rich_help_panel=MODEL,
        help="How a sentence-transformers model runs: auto (onnx on a CPU, torch on a GPU), torch, onnx "
        "(ONNX Runtime, same vectors) or onnx-int8 (refused if its vectors drift: mean cosine < 0.99).",
    ),
]
IdColOpt = Annotated[str, typer.Option(metavar="COL", rich_help_panel=INPUT, help="Column with a unique id per row.")]
GoldIdColOpt = Annotated[
    Optional[str],
    typer.Option(help="--gold's id column (default: the catalog's).", metavar="COL", rich_help_panel="Gold"),
]
SingletonClusterOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        help='Repeatable: a gold label of unrelated rows (a catch-all "no match" cluster).',
        metavar="LABEL",
        rich_help_panel="Gold",
    ),
]
TextColsOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        metavar="COLS",
        rich_help_panel=INPUT,
        help="Columns joined into the title (repeat, or separate by commas). Default: title-like column, "
        "then brand/manufacturer.",
    ),
]
ImageColOpt = Annotated[
    Optional[str],
    typer.Option(
        metavar="COL",
        rich_help_panel=INPUT,
        help="Column of image paths (relative to the catalog file) or http(s) URLs.",
    ),
]
ImageRootOpt = Annotated[
    Optional[Path],
    typer.Option(
        metavar="DIR",
        rich_help_panel=INPUT,
        help="Folder image paths are relative to and may not leave (default: the catalog's folder).",
    ),
]
AllowPrivateOpt = Annotated[
    bool,
    typer.Option(
        "--allow-private-urls",
        metavar="",
        rich_help_panel=INPUT,
        help="Fetch image URLs on loopback, private or link-local addresses.",
    ),
]
AllowOutsideOpt = Annotated[
    bool,
    typer.Option(
        "--allow-outside-root", metavar="", rich_help_panel=INPUT, help="Follow image paths out of the image root."
    ),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        min=-1,
        metavar="N",
        rich_help_panel=PERFORMANCE,
        help="DataLoader workers decoding images (-1: one per spare core).",
    ),
]
SepOpt = Annotated[
    Optional[str],
    typer.Option(metavar="CHAR", rich_help_panel=INPUT, help="CSV delimiter (default: sniffed among , ; tab |)."),
]
EncodingOpt = Annotated[
    Optional[str],
    typer.Option(
        metavar="NAME",
        rich_help_panel=INPUT,
        help="CSV encoding, e.g. cp1252 (default: sniffed: BOM, UTF-8, else cp1252).",
    ),
]
BatchSizeOpt = Annotated[
    int, typer.Option(min=1, metavar="N", rich_help_panel=PERFORMANCE, help="Rows per encoder forward pass.")
]
VectorsOpt = Annotated[
    Optional[Vectors],
    typer.Option(
        metavar="KIND",
        rich_help_panel="Scoring",
        help="Vectors to score: text, image or fused. Default: fused with images, else text.",
    ),
]
LogitScaleOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        callback=finite,
        metavar="X",
        rich_help_panel="Scoring",
        help="Zero-shot softmax sharpness: probabilities = softmax(logit_scale x cosine), as CLIP.",
    ),
]


def default_out(kind: str, catalog: Path) -> Path:
    """``runs/KIND/FOLDER-NAME`` for a job given no ``--out``: named after the catalog (its
    folder and file name), so two catalogs never share one directory."""
    resolved = Path(catalog).resolve()
    return Path("runs") / kind / f"{resolved.parent.name}-{resolved.name.split('.')[0]}"


def split_cols(cols: Optional[str | list[str]]) -> Optional[list[str]]:
    """The one list convention of names (columns, signals): a repeated option, each value
    comma-separated too. ``["a, b", "c"]`` or ``"a,b,c"`` -> ``["a", "b", "c"]``; ``None``
    or empty -> ``None``."""
    values = [cols] if isinstance(cols, str) else cols or []
    names = [c.strip() for v in values for c in v.split(",") if c.strip()]
    return names or None


def source_options(
    id_col: str,
    text_cols: Optional[list[str]],
    image_col: Optional[str],
    image_root: Optional[Path],
    allow_outside_root: bool,
    model: str,
    sep: Optional[str] = None,
    encoding: Optional[str] = None,
    allow_private_urls: bool = False,
) -> dict:
    """The shared catalog options as keyword arguments of :class:`eclip.api.CatalogSource`."""
    return {
        "id_col": id_col,
        "text_cols": split_cols(text_cols),
        "image_col": image_col,
        "image_root": image_root,
        "allow_outside_root": allow_outside_root,
        "allow_private_urls": allow_private_urls,
        "model": model,
        "sep": parse_sep(sep),
        "encoding": encoding,
    }


SCALE_OUT = "Scale-out (Ray)"
RayOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ray",
        metavar="[ADDRESS]",
        rich_help_panel=SCALE_OUT,
        help="Run on Ray (extra 'ray'). ADDRESS: auto or HOST:PORT of a running cluster; none: a local Ray instance.",
    ),
]
RayWorkersOpt = Annotated[
    Optional[int],
    typer.Option(
        "--ray-workers",
        min=1,
        metavar="N",
        rich_help_panel=SCALE_OUT,
        help="Ray actors or tasks at once (default: one per GPU, else per CPU).",
    ),
]


def ray_runner(address: Optional[str], workers: Optional[int]) -> RayRunner | None:
    """The :class:`eclip.distributed.RayRunner` of ``--ray`` / ``--ray-workers`` (``None``
    without ``--ray``)."""
    if address is None:
        if workers is not None:
            raise typer.BadParameter("only means something with --ray", param_hint="--ray-workers")
        return None
    from eclip.distributed import RayRunner

    return RayRunner(address=None if address == LOCAL_RAY else address, num_workers=workers)


#: What ``--ray`` without an address stands for (see :func:`optional_ray_address`).
LOCAL_RAY = "local"


def optional_ray_address(argv: list[str]) -> list[str]:
    """``argv`` with ``local`` put after a bare ``--ray``, so that its address is optional.

    The token after ``--ray`` is its address when it is ``auto``, ``local`` or holds a
    ``:`` (``HOST:PORT``, ``ray://HOST:PORT``: Ray addresses always name a port); otherwise
    (another option, the catalog, the end) ``--ray`` had no address.
    """
    out = []
    for i, token in enumerate(argv):
        out.append(token)
        if token == "--ray":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is None or not (nxt in ("auto", LOCAL_RAY) or (":" in nxt and not nxt.startswith("-"))):
                out.append(LOCAL_RAY)
    return out


def parse_sep(sep: Optional[str], flag: str = "--sep") -> Optional[str]:
    """``--sep`` (or ``flag``) as a one-character delimiter (``\\t`` and ``tab`` mean a tab).

    Raises:
        typer.BadParameter: more than one character.
    """
    if sep is None:
        return None
    sep = {"\\t": "\t", "tab": "\t"}.get(sep, sep)
    if len(sep) != 1:
        raise typer.BadParameter(f"{sep!r} is not one character; pass e.g. ';', '|' or '\\t'", param_hint=flag)
    return sep


def neighbours_opt(help: str, panel: str | None = None) -> Any:
    """The ``--neighbours`` / ``-k`` option (``--k`` kept as an alias): neighbours per row."""
    return typer.Option("--neighbours", "-k", "--k", min=1, help=help, metavar="K", rich_help_panel=panel)
