"""Checks that configs run on themselves (``__post_init__``), so that a bad value stops
with one line naming the field, for the CLI and for any Python caller alike.

The choices are ``Literal`` types (Typer shows and validates them on the command line); the
ranges are the ones each field's docstring gives.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

from eclip.errors import EclipError

#: Which vectors of an embeddings directory a job reads.
Vectors = Literal["text", "image", "fused"]
#: Text runtimes of the encoders (:func:`eclip.encoders.load_encoder`).
Runtime = Literal["auto", "torch", "onnx", "onnx-int8"]


class ConfigError(EclipError):
    """A job config holds a value out of its field's range or choices."""


def _name(cfg: Any, field: str) -> str:
    return f"{type(cfg).__name__}.{field}"


def check_choice(cfg: Any, field: str, choices: Any, optional: bool = False) -> None:
    """Refuse ``cfg.field`` unless it is one of ``choices`` (a ``Literal`` type or a tuple);
    ``None`` passes when ``optional``.

    Raises:
        ConfigError: naming the field, the value and the choices.
    """
    value = getattr(cfg, field)
    allowed = get_args(choices) or tuple(choices)
    if value is None and optional:
        return
    if value not in allowed:
        raise ConfigError(f"{_name(cfg, field)} is {value!r}; choose one of {', '.join(map(str, allowed))}.")


def check_range(
    cfg: Any, field: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
) -> None:
    """Refuse ``cfg.field`` outside ``[lo, hi]`` (an open end with ``lo_open`` / ``hi_open``), or
    not finite (NaN, infinities); ``None`` passes (an unset optional field).

    Raises:
        ConfigError: naming the field, the value and the range.
    """
    value = getattr(cfg, field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{_name(cfg, field)} is {value!r}; it must be a number.")
    if not math.isfinite(value):
        raise ConfigError(f"{_name(cfg, field)} is {value!r}; it must be a finite number.")
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    high_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if low_bad or high_bad:
        if hi is None:
            rule = f"{'above' if lo_open else 'at least'} {lo:g}"
        elif lo is None:
            rule = f"{'below' if hi_open else 'at most'} {hi:g}"
        else:
            rule = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(f"{_name(cfg, field)} is {value!r}; it must be {rule}.")


def recheck(cfg: Any) -> None:
    """Run a job config's own checks (its ``__post_init__``) again, at the start of its job:
    dataclasses check values when a config is made, not when a field is set afterwards.

    Raises:
        ConfigError: a field holds a value out of its range or choices.
    """
    cfg.__post_init__()
