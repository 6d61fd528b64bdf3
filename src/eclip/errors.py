"""User-facing errors.

Every error that bad input can cause is an :class:`EclipError` whose message names the file,
row and column at fault and says what to do. The CLI prints the message alone (no traceback)
and exits with status 2.
"""

from __future__ import annotations


class EclipError(Exception):
    """Base class: an error the user can fix; the message says how."""


class CatalogError(EclipError):
    """A catalog file is missing, unreadable, or its columns or rows are unusable."""


class ModelError(EclipError):
    """A model name or checkpoint cannot be resolved or loaded."""


class RunDirError(EclipError):
    """A run directory holds artefacts from other inputs, models or settings than asked for."""


class GoldError(EclipError):
    """A gold-label file for evaluation is missing or malformed."""


class InputFileError(EclipError):
    """A file eclip reads back (a manifest, calibration, match model, review or label file)
    cannot be parsed, or a command was asked to write over a file it reads."""
