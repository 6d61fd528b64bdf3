"""The package's structure: imports run one way, no module is too long, the API facade keeps
every name it had, and the CLI's help reads at 80 columns."""

import ast
import graphlib
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "eclip"
MAX_LINES = 500

#: Concept packages: each is one idea of the spine; none may call a job, the API or the CLI.
CONCEPTS = (
    "catalog",
    "encoders",
    "index",
    "matcher",
    "cluster",
    "classify",
    "evaluation",
    "report",
    "train",
    "distributed",
)

#: Every public name :mod:`eclip.api` had before the split into :mod:`eclip.jobs`.
API_NAMES = (
    "DEFAULT_METHOD",
    "DEFAULT_THRESHOLD",
    "EmbedConfig",
    "embed",
    "train",
    "index_build",
    "index_merge",
    "index_add",
    "index_query",
    "CatalogSource",
    "DedupeConfig",
    "read_calibration",
    "dedupe",
    "dedupe_against",
    "ClusterConfig",
    "cluster",
    "ClassifyConfig",
    "classify",
    "AdultFilterConfig",
    "binary_gold",
    "filter_adult",
    "evaluate_predictions",
    "evaluate",
    "EclipError",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the eclip modules it imports, at any depth (imports inside functions count:
    a deferred import hides a circle, it does not remove it)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {resolve(a.name) for a in node.names if a.name.startswith("eclip")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                if base.startswith("eclip"):
                    deps |= {
                        resolve(f"{base}.{a.name}") if f"{base}.{a.name}" in mods else resolve(base) for a in node.names
                    }
        graph[mod] = {d for d in deps if d and d != mod}
    return graph


def test_import_graph_is_found():
    graph = import_graph()
    assert "eclip.jobs.dedupe" in graph and "eclip.matcher" in graph["eclip.jobs.dedupe"]
    assert "eclip.encoders.store" in graph["eclip.encoders.embed"]  # a deferred or top-level import is seen


def test_no_import_circle():
    try:
        list(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")


def test_cycle_detection_catches_a_circle():
    graph = {"a": {"b"}, "b": {"a"}}
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())


def test_layers_point_one_way():
    graph = import_graph()
    bad = []
    for mod, deps in graph.items():
        layer = mod.split(".")[1] if mod.count(".") else ""
        for dep in deps:
            top = dep.split(".")[1] if dep.count(".") else ""
            if layer in CONCEPTS and top in ("jobs", "api", "cli"):
                bad.append(f"{mod} -> {dep}")
            if layer == "jobs" and top in ("api", "cli"):
                bad.append(f"{mod} -> {dep}")
            if layer == "cli" and top == "jobs":
                bad.append(f"{mod} -> {dep} (the CLI goes through eclip.api)")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_module_is_too_long():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_api_facade_keeps_every_public_name():
    from eclip import api
    from eclip.jobs.dedupe import DedupeConfig, dedupe

    missing = [n for n in API_NAMES if not hasattr(api, n)]
    assert not missing, f"eclip.api lost {missing}"
    assert set(API_NAMES) <= set(api.__all__)
    assert api.dedupe is dedupe and api.DedupeConfig is DedupeConfig
    assert len(Path(api.__file__).read_text().splitlines()) < 100  # a facade, not a second home


COMMANDS = [
    "embed",
    "dedupe",
    "train",
    "index build",
    "index merge",
    "index add",
    "index query",
    "cluster",
    "classify",
    "filter-adult",
    "report",
    "eval",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_reads_at_80_columns(command):
    """Every line fits 80 columns, and every panel leaves its help text at least 28 columns
    (the description column, measured where a description wraps)."""
    from eclip.cli import app

    res = CliRunner().invoke(
        app, [*command.split(), "--help"], env={"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}, terminal_width=80
    )
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    widths: dict[str, int] = {}
    panel = None
    for line in lines:
        if line.startswith("╭─"):
            panel = re.sub(r"[╭─╮]", "", line).strip()
        elif line.startswith("│") and panel:
            body = line[1:-1]
            if body.strip() and not body[:20].strip():  # a wrapped description line
                widths[panel] = min(widths.get(panel, 99), len(body) - 1 - (len(body) - len(body.lstrip())))
    assert widths, res.output
    narrow = {p: w for p, w in widths.items() if w < 28}
    assert not narrow, f"`eclip {command} --help` squeezes descriptions into {narrow} columns:\n{res.output}"
