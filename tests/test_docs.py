"""The docs: the README stays a landing page, every page in the site's navigation exists, and
every command on the getting-started page runs on the shared data and writes what it says.

The site itself is built by ``.ci/run`` (``mkdocs build --strict``, the ``docs`` group)."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GETTING_STARTED = DOCS / "getting-started.md"
#: How the pages call eclip; the test runs the console script beside this interpreter instead.
UV_ECLIP = "uv run --frozen --extra cpu eclip"
#: The install commands a page may show: checked against .ci/run (CI runs them), not run here.
SETUP = ("pip install uv==", "uv sync ")


def bash_commands(markdown: str) -> list[str]:
    """The commands of a page's fenced ```bash blocks: comments dropped, continuation lines
    joined, and ``a && b`` split into its commands."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands += [c.strip() for c in line.split("&&")]
    return commands


def nav_pages() -> list[str]:
    """Every ``.md`` file mkdocs.yml's nav names (read as text: the file is plain YAML)."""
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:\n", 1)[1]
    return re.findall(r"^\s*-\s+(?:[^\n]*?:\s+)?(\S+\.md)\s*$", nav, flags=re.M)


def test_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150, "the README is the landing page: the manual belongs in docs/"
    # CI runs "the README's test command"
    assert "uv run --frozen --extra cpu --extra ray pytest -q" in readme
    assert "pytest -q -m slow" in readme
    links = re.findall(r"\]\(((?!https?://)[^)#\s]+)", readme)
    assert links, "the README links the docs pages"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    pages = nav_pages()
    assert "getting-started.md" in pages and "benchmarks/scale.md" in pages
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml names pages that do not exist: {missing}"
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert not on_disk - set(pages), f"pages missing from mkdocs.yml's nav: {sorted(on_disk - set(pages))}"


def test_getting_started_shows_only_commands_this_test_runs():
    commands = bash_commands(GETTING_STARTED.read_text())
    assert any(c.startswith(UV_ECLIP + " dedupe ") for c in commands)
    ci = [c.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() for c in line.split("&&")]
    for command in commands:
        if command.startswith(SETUP):
            # the install CI runs (which adds --group docs) covers what the page installs
            ci_command = next((c for c in ci if c.split()[:2] == command.split()[:2]), "")
            assert set(command.split()) <= set(ci_command.split()), f"{command!r} is not what .ci/run installs"
        else:
            assert command.startswith(UV_ECLIP + " "), (
                f"getting-started shows a command the test cannot run: {command!r}"
            )


def test_the_readme_commands_are_the_getting_started_ones():
    """The README's quickstart is a subset of the getting-started page, so this test runs it too."""
    shown = set(bash_commands(GETTING_STARTED.read_text()))
    readme = bash_commands((ROOT / "README.md").read_text())
    quickstart = [c for c in readme if "pytest" not in c]
    assert quickstart and set(quickstart) <= shown, set(quickstart) - shown


def _expected_outputs(args: list[str]) -> list[str]:
    """What each command says it writes (relative to the working directory)."""
    sub, rest = args[0], args[1:]
    if sub == "dedupe":
        out = rest[rest.index("--out") + 1]
        return [f"{out}/{name}" for name in ("groups.parquet", "pairs.parquet", "manifest.json")]
    if sub == "eval":
        return [str(Path(rest[0]).parent / "eval.json")]
    if sub == "report":
        return [f"{rest[0]}/report.html", f"{rest[0]}/review.csv"]
    return []


@pytest.mark.slow
def test_getting_started_commands_run(shared_data, tmp_path):
    """Each command as the page shows it, run in order in a fresh folder; ``../shared/data``
    is the shared data wherever it is (about 30 s on two idle cores, most of it the dedupe)."""
    eclip = Path(sys.executable).parent / "eclip"
    assert eclip.exists(), f"no eclip console script beside {sys.executable}"
    commands = [c for c in bash_commands(GETTING_STARTED.read_text()) if c.startswith(UV_ECLIP + " ")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "100"}
    for command in commands:
        args = shlex.split(command.replace("../shared/data", str(shared_data)))[len(UV_ECLIP.split()) :]
        res = subprocess.run([str(eclip), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{command}\nexit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        missing = [p for p in _expected_outputs(args) if not (tmp_path / p).is_file()]
        assert not missing, f"{command} did not write {missing}"
    # the page says "pairwise F1 about 0.86" for this run
    metrics = json.loads((tmp_path / "runs" / "abt_buy" / "eval.json").read_text())["metrics"]
    assert 0.83 <= metrics["f1"] <= 0.89, metrics
