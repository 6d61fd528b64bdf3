"""Number options refuse NaN and +/-infinity at parse time (issue 34).

Typer's float parsing accepts "nan", "inf", "-inf", "infinity" (and "1e400", which
overflows to inf), and a one-sided ``min=``/``max=`` bound lets infinity through; with
click's float types NaN passes every bound too. Every float option therefore carries
:func:`eclip.cli.options.finite`. These tests walk the whole command tree, groups included,
so that a new float option without it fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args, get_origin

import pytest
import typer
from typer.testing import CliRunner

from eclip.cli import app
from eclip.cli.options import finite

NON_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "-infinity", "1e400"]


def _commands(cmd: Any, path: str = "eclip") -> Iterator[tuple[str, Any]]:
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def _kind(param: Any) -> Any:
    """The Python type a parameter parses to: ``float``, ``int``, ``list[float]``..."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:  # Typer >= 0.2x: parsed by pydantic from the annotation
        return descriptor.annotation
    return _click_kind(param.type)


def _click_kind(t: Any) -> Any:
    """The same for older Typer, from click's parameter types."""
    import click

    if isinstance(t, click.Tuple):
        return tuple[tuple(_click_kind(s) for s in t.types)]
    if isinstance(t, click.FloatRange) or t is click.FLOAT:
        return float
    if isinstance(t, click.IntRange) or t is click.INT:
        return int
    return t


def _bound(param: Any, name: str) -> float | None:
    value = getattr(param, name, None)
    return value if value is not None else getattr(getattr(param, "type", None), name, None)


def _params(kind: type) -> list[tuple[str, Any, Any]]:
    return [
        (f"{path} {param.opts[0]}", cmd, param)
        for path, cmd in _commands(typer.main.get_command(app))
        for param in cmd.params
        if _kind(param) is kind
    ]


FLOAT_PARAMS = _params(float)
INT_PARAMS = _params(int)


def _ids(params: list[tuple[str, Any, Any]]) -> list[str]:
    return [name for name, _, _ in params]


def test_the_walk_finds_the_number_options():
    """Guards the walk itself: some twenty float options, in the ``index`` group too."""
    names = _ids(FLOAT_PARAMS)
    assert len(names) >= 20
    assert {"eclip dedupe --threshold", "eclip index build --max-memory", "eclip classify --logit-scale"} <= set(names)
    assert "eclip dedupe --neighbours" in _ids(INT_PARAMS)


@pytest.mark.parametrize(("name", "cmd", "param"), FLOAT_PARAMS, ids=_ids(FLOAT_PARAMS))
def test_every_float_option_refuses_non_finite_values(name, cmd, param):
    assert getattr(param.callback, "__wrapped__", param.callback) is finite, f"{name}: add callback=finite"
    ctx = typer.Context(cmd, info_name=cmd.name)
    for text in NON_FINITE:
        with pytest.raises(typer.BadParameter):
            param.process_value(ctx, text)
    lo, hi = _bound(param, "min"), _bound(param, "max")
    normal = min(max(0.5, lo if lo is not None else 0.5), hi if hi is not None else 0.5)
    assert param.process_value(ctx, str(normal)) == pytest.approx(normal)


@pytest.mark.parametrize(("name", "cmd", "param"), INT_PARAMS, ids=_ids(INT_PARAMS))
def test_int_options_cannot_take_non_finite_values(name, cmd, param):
    """Integer parsing refuses them already; kept so that it stays so."""
    ctx = typer.Context(cmd, info_name=cmd.name)
    for text in NON_FINITE:
        with pytest.raises(typer.BadParameter):
            param.process_value(ctx, text)


def test_no_float_hides_in_a_list_or_tuple_option():
    """A list or tuple of floats would escape the per-value walk above: there is none (give
    one its own check, or a ``finite`` that looks at each item, before adding one)."""
    for path, cmd in _commands(typer.main.get_command(app)):
        for param in cmd.params:
            kind = _kind(param)
            if get_origin(kind) in (list, tuple):
                assert float not in get_args(kind), f"{path} {param.opts[0]}"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_dedupe_refuses_a_nan_threshold(tmp_path, value):
    """The reported case: `eclip dedupe CAT --out R --threshold nan` ran and wrote "threshold": NaN."""
    cat, out = tmp_path / "cat.csv", tmp_path / "out"
    cat.write_text("id,title\n1,a\n2,b\n")
    r = CliRunner().invoke(app, ["dedupe", str(cat), "--out", str(out), "--threshold", value])
    said = " ".join(r.output.replace("│", " ").split())  # the error box, unwrapped
    assert r.exit_code == 2, r.output
    assert f"Invalid value for '--threshold': {value} is not a finite number." in said
    assert not out.exists()


@pytest.mark.parametrize("value", ["NaN", "-Infinity"])
def test_dedupe_refuses_a_calibration_file_with_a_non_finite_threshold(tmp_path, value):
    """--calibration reads its threshold from JSON, which allows NaN and Infinity: one clear line, no run."""
    from conftest import run_main

    cat, out, cal = tmp_path / "cat.csv", tmp_path / "out", tmp_path / "calibration.json"
    cat.write_text("id,title\n1,a\n2,b\n")
    cal.write_text(f'{{"method": "mutual", "threshold": {value}}}')
    code, said = run_main("dedupe", cat, "--out", out, "--calibration", cal)
    assert code == 2 and "is not a finite number" in said and "Traceback" not in said
    assert not out.exists()
