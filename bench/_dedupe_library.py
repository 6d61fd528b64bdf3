"""Train the `dedupe` library (dedupe.io) on a simulated reviewer's answers and partition a
catalog; run by ``bench/active.py`` in an interpreter that has ``dedupe`` installed.

Reads a JSON job on stdin: ``{"rows": {id: {field: value}}, "fields": [[type, name], ...],
"gold": {id: label}, "budget": N, "seed": S, "thresholds": [t, ...]}``; writes
``{"groups": {threshold: {id: group}},
"labelled_ids": [...], "seconds": s}`` on stdout. The reviewer answers dedupe's own
active-learning queries (``uncertain_pairs``) from the gold labels, as `dedupe`'s console
labeller would be answered, until ``budget`` pairs are labelled.
"""

import json
import random
import sys
import time

import dedupe
import numpy as np


def main() -> None:
    job = json.load(sys.stdin)
    random.seed(job["seed"])
    np.random.seed(job["seed"])
    t0 = time.perf_counter()
    rows = {k: {f: (v if v not in ("", None) else None) for f, v in r.items()} for k, r in job["rows"].items()}
    kinds = {
        "String": dedupe.variables.String,
        "Text": dedupe.variables.Text,
        "Price": dedupe.variables.Price,
        "Exact": dedupe.variables.Exact,
    }
    fields = [kinds[t](name, has_missing=True) for t, name in job["fields"]]
    deduper = dedupe.Dedupe(fields, num_cores=1)
    deduper.prepare_training(rows, sample_size=min(15000, 5 * len(rows)))
    gold = job["gold"]
    labelled: set[str] = set()
    answered = {"match": 0, "distinct": 0}
    for _ in range(job["budget"]):
        pairs = deduper.uncertain_pairs()
        if not pairs:
            break
        (ra, rb) = pairs[0]
        ida = ra["__id"]
        idb = rb["__id"]
        same = gold[ida] == gold[idb]
        deduper.mark_pairs({"match": [(ra, rb)] if same else [], "distinct": [] if same else [(ra, rb)]})
        answered["match" if same else "distinct"] += 1
        labelled |= {ida, idb}
    deduper.train()
    groups = {}
    for t in job["thresholds"]:
        groups[str(t)] = {
            m: g for g, (members, _scores) in enumerate(deduper.partition(rows, threshold=t)) for m in members
        }
    json.dump(
        {
            "groups": groups,
            "labelled_ids": sorted(labelled),
            "answered": answered,
            "seconds": round(time.perf_counter() - t0, 1),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
