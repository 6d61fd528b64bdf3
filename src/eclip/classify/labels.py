"""Label sets: one label per line, or a taxonomy in Google product taxonomy format.

Google's file (https://www.google.com/basepages/producttype/taxonomy.en-US.txt) lists one
category path per line, levels separated by ``" > "``, e.g.
``Health & Beauty > Health Care > Condoms``; its ``-with-ids`` variant prefixes each line
with ``ID - ``; a first line starting with ``#`` names the version. All three forms are
read here. A plain list is a taxonomy of depth 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from eclip.errors import EclipError

SEPARATOR = " > "
_ID_PREFIX = re.compile(r"^\d+\s+-\s+")


class LabelsError(EclipError):
    """A labels file is missing, empty or malformed."""


@dataclass(frozen=True)
class Taxonomy:
    """A tree of category paths.

    Attributes:
        paths: every node's path, parents before children, in file order (a parent that the
            file never lists on its own line is added before its first child).
        children: parent path (``()`` for the root) -> child paths, in file order.
        source: the file it was read from (``None`` when built in memory).
    """

    paths: tuple[tuple[str, ...], ...]
    children: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    source: Path | None = None

    @property
    def depth(self) -> int:
        """Levels in the deepest path (1 for a flat list)."""
        return max(len(p) for p in self.paths)

    @property
    def leaves(self) -> tuple[tuple[str, ...], ...]:
        """Paths without children, in file order."""
        return tuple(p for p in self.paths if not self.children.get(p))

    def level(self, i: int) -> tuple[tuple[str, ...], ...]:
        """The paths with ``i`` levels (``i`` from 1)."""
        return tuple(p for p in self.paths if len(p) == i)

    @staticmethod
    def name(path: tuple[str, ...]) -> str:
        """``"A > B > C"`` for ``("A", "B", "C")``."""
        return SEPARATOR.join(path)

    @classmethod
    def flat(cls, names: list[str]) -> Taxonomy:
        """A depth-1 taxonomy of ``names`` taken whole (``" > "`` inside a name is not split)."""
        paths = tuple((n,) for n in names)
        return cls(paths=paths, children={(): paths})

    @classmethod
    def from_lines(cls, lines: list[str], source: Path | None = None) -> Taxonomy:
        """Build a taxonomy from label lines (see :func:`parse_labels`).

        Raises:
            LabelsError: no labels, an empty level (``"A >  > C"``), or a label listed twice
                (the message gives the 1-based line numbers).
        """
        where = f"{source}: " if source else ""
        seen: dict[tuple[str, ...], int] = {}
        order: list[tuple[str, ...]] = []
        for lineno, raw in enumerate(lines, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            text = _ID_PREFIX.sub("", text)
            parts = tuple(p.strip() for p in text.split(">"))
            if any(not p for p in parts):
                raise LabelsError(
                    f"{where}line {lineno} ({raw.strip()!r}) has an empty level; write paths as 'A > B > C'."
                )
            if parts in seen:
                raise LabelsError(
                    f"{where}label {cls.name(parts)!r} is on line {seen[parts]} and again on line {lineno}; list each label once."
                )
            for i in range(1, len(parts)):
                if parts[:i] not in seen:  # an implied parent
                    seen[parts[:i]] = lineno
                    order.append(parts[:i])
            seen[parts] = lineno
            order.append(parts)
        if not order:
            raise LabelsError(
                f"{where}no labels (one per line, or taxonomy paths 'A > B > C'; '#' lines are comments)."
            )
        children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for p in order:
            children.setdefault(p[:-1], []).append(p)
        return cls(paths=tuple(order), children={k: tuple(v) for k, v in children.items()}, source=source)


def parse_labels(path: str | Path) -> Taxonomy:
    """Read a labels file: one label per line, or Google product taxonomy paths.

    Blank lines and lines starting with ``#`` are skipped; a leading ``ID - `` (Google's
    ``taxonomy-with-ids`` file) is dropped. Parents need not be listed on their own lines.

    Raises:
        LabelsError: the file is missing, unreadable as UTF-8, empty, or malformed.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelsError(f"{p}: no such labels file.") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise LabelsError(f"{p}: cannot read it as UTF-8 text ({exc}).") from None
    return Taxonomy.from_lines(text.splitlines(), source=p)
