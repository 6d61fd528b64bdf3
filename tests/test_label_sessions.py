"""Several reviewers on one label file (issue 34): concurrent ``eclip label --interactive``
sessions and ``eclip label`` keep every answer."""

import json
import os
import queue
import subprocess
import sys
import threading
import time

import polars as pl
import pytest
from conftest import abt_head
from typer.testing import CliRunner

from eclip.cli import app
from eclip.jobs.label_store import HOST, claims_path
from eclip.jobs.learn import LabelSession, propose, write_labels
from eclip.matcher.labels import KEYS

LABEL = [sys.executable, "-c", "from eclip.cli import main; main()", "label"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    catalog = abt_head(tmp_path_factory, 200, "label_sessions")
    out = catalog.parent / "run"
    r = CliRunner().invoke(app, ["dedupe", str(catalog), "--out", str(out), "--model", "minilm-static"])
    assert r.exit_code == 0, r.output
    return out


def table(path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False).with_columns(pl.col("decision").fill_null(""))


def pairs(frame: pl.DataFrame) -> list[frozenset]:
    return [frozenset(p) for p in zip(frame["id_a"].to_list(), frame["id_b"].to_list())]


def decision_of(frame: pl.DataFrame, pair: frozenset) -> list[str]:
    return [d for p, d in zip(pairs(frame), frame["decision"].to_list()) if p == pair]


def interactive(run, labels, limit: int, **kw) -> subprocess.Popen:
    cmd = [*LABEL, str(run), "--labels", str(labels), "--interactive", "--limit", str(limit)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, env=ENV, **kw)


def shown_pairs(proc: subprocess.Popen) -> queue.Queue:
    """A queue that gets an item each time the session shows a pair (read from its output)."""
    shown: queue.Queue = queue.Queue()
    threading.Thread(
        target=lambda: [shown.put(line) for line in proc.stdout if b"same product?" in line], daemon=True
    ).start()
    return shown


def test_two_interactive_sessions_keep_every_answer(run, tmp_path):
    """Two reviewers, both with a pair on screen before either answers, then answering in
    turn: one says same to every pair, the other different."""
    labels = tmp_path / "label.csv"
    procs = [interactive(run, labels, 6, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    shown = [shown_pairs(proc) for proc in procs]
    for _ in range(6):
        for proc, pair_shown, key in zip(procs, shown, (b"y\n", b"n\n")):
            pair_shown.get(timeout=120)
            proc.stdin.write(key)
            proc.stdin.flush()
    for proc in procs:
        proc.stdin.close()
        assert proc.wait(120) == 0
    final = table(labels)
    assert sorted(d for d in final["decision"].to_list() if d) == ["different"] * 6 + ["same"] * 6
    assert len(set(pairs(final))) == len(final) == 12  # no pair twice, in either order
    assert not claims_path(labels).exists()  # both sessions let go of their pairs


def test_interactive_session_and_propose_keep_every_answer(run, tmp_path):
    """A session (in the CLI's order of calls) while ``eclip label`` appends pairs from
    another thread, at least once between each pair shown and its answer."""
    labels = tmp_path / "label.csv"
    stop, seen, added, errors = threading.Event(), set(), [], []

    def proposer():
        try:
            while not stop.is_set():
                added.append(propose(run, labels, batch=2)["added"])
                seen.update(pairs(table(labels)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=proposer, daemon=True)
    thread.start()
    session = LabelSession(run, labels)
    for key in "ynynyn":
        row = session.next()
        session.save()
        assert session.pair(row)["decision"] == ""
        done = len(added)
        while len(added) == done and not errors and thread.is_alive():
            time.sleep(0.01)  # the reviewer thinks; eclip label writes the file meanwhile
        assert session.answer(row, KEYS[key]) is None
    stop.set()
    thread.join(60)
    assert not errors and len(added) >= 6 and sum(added) == 2 * len(added)
    final = table(labels)
    assert seen <= set(pairs(final))  # every proposed pair is still there...
    assert sorted(d for d in final["decision"].to_list() if d) == ["different"] * 3 + ["same"] * 3  # ...every answer
    assert len(set(pairs(final))) == len(final)


def test_sessions_never_share_a_pending_pair_and_dead_claims_lapse(run, tmp_path):
    labels = tmp_path / "label.csv"
    propose(run, labels, batch=3)
    first = LabelSession(run, labels), LabelSession(run, labels)
    rows = [s.next() for s in first]
    shown = [pairs(s.table)[r] for s, r in zip(first, rows)]
    assert shown[0] != shown[1] and rows == [0, 1]
    assert first[1].answer(rows[1], "different") is None and first[0].answer(rows[0], "same") is None
    after = table(labels)
    assert decision_of(after, shown[0]) == ["same"] and decision_of(after, shown[1]) == ["different"]
    assert len(after) == 3
    # a claim left by a dead process is ignored; a live session's is not
    last = pairs(after)[2]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    a, b = sorted(last)
    claim = {"pid": dead.pid, "host": HOST, "at": time.time(), "id_a": a, "id_b": b}
    claims_path(labels).write_text(json.dumps({"gone": claim}))
    third, fourth = LabelSession(run, labels), LabelSession(run, labels)
    r3 = third.next()
    assert pairs(third.table)[r3] == last
    r4 = fourth.next()  # the pending pair is third's now: fourth gets a new one, appended
    assert r4 == 3 and pairs(fourth.table)[r4] != last and len(table(labels)) == 4
    assert set(json.loads(claims_path(labels).read_text())) == {third.name, fourth.name}
    third.close()
    fourth.close()
    assert not claims_path(labels).exists()


def swapped(frame: pl.DataFrame, row: int, decision: str | None = None) -> pl.DataFrame:
    """``frame`` with ``row``'s ids in the other order (and its decision set, if given)."""
    at = pl.int_range(pl.len()) == row
    return frame.with_columns(
        pl.when(at).then(pl.col("id_b")).otherwise(pl.col("id_a")).alias("id_a"),
        pl.when(at).then(pl.col("id_a")).otherwise(pl.col("id_b")).alias("id_b"),
        pl.when(at & (decision is not None)).then(pl.lit(decision)).otherwise(pl.col("decision")).alias("decision"),
    )


def test_a_different_answer_to_an_answered_pair_keeps_the_first(run, tmp_path):
    labels = tmp_path / "label.csv"
    propose(run, labels, batch=4)
    session = LabelSession(run, labels)
    row = session.next()
    pair = pairs(session.table)[row]
    # meanwhile someone else answers that pair (another session, or the file opened in a
    # spreadsheet, writing its ids in the other order), and eclip label appends pairs
    write_labels(swapped(table(labels), row, "same"), labels)
    propose(run, labels, batch=2)
    assert session.answer(row, "different") == "same"  # told, and the first answer stands
    after = table(labels)
    assert decision_of(after, pair) == ["same"] and len(after) == 6
    # a pending pair whose ids were turned round on disk gets the answer on its row
    row = session.next()
    pair = pairs(session.table)[row]
    write_labels(swapped(table(labels), row), labels)
    assert session.answer(row, "unsure") is None
    assert session.answer(row, "unsure") is None  # the same answer again is no conflict
    after = table(labels)
    assert decision_of(after, pair) == ["unsure"] and len(after) == 6
    assert sorted(d for d in after["decision"].to_list() if d) == ["same", "unsure"]
    assert session.counts() == {"same": 1, "different": 0, "unsure": 1, "pending": 4}
