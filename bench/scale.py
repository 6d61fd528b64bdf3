"""Benchmark `eclip dedupe` at scale: a synthetic catalog of N rows (default 1,000,000) with
known groups, run through the CLI once per embedding configuration, all measured in the same
run so that every speed is printed beside the baseline's (today's PyTorch path).

The catalog is built from the real titles in ``../shared/data`` (Abt-Buy ``name``, WDC
``title``, netmeds ``title``, fashion ``title``; one title per real product: Abt-Buy's matched
pairs and WDC's ``product_id`` groups count once, and titles are deduplicated). Each base title
is a product; a product gets a group of 1..20 listings (geometric sizes, mean about 2.5), the
first its clean title and the others realistic edits of it: words reordered, brand (first word)
dropped, letter typos, case changes, shop noise ("- Free Shipping", "NEW", "(Renewed)"), price
jittered, brand sometimes missing. Near-twins that must NOT match are separate products with
their own group: the same title with another capacity/size number (64GB -> 128GB, 100 ml ->
200 ml) or another colour word. When N needs more products than there are base titles, bases
are reused, each reuse made a distinct product by a pseudo model code ("XK-4821") appended to
the title; a base, its near-twins and their codes form a ``family``. The catalog is written as
Parquet (columns id, title, brand, price, group, family, variant) under ``--work`` and reused
when the same N and seed are asked again.

Configurations (``--configs``), each ``eclip dedupe --text-cols title --id-col id --brand-col
brand --price-col price`` as a subprocess with a cold embedding cache:

* ``static``: ``--model minilm-static`` (model2vec static embeddings) on all N rows;
* ``onnx``: ``--runtime onnx`` (ONNX Runtime fp32 MiniLM) on a subset of whole groups
  (``--transformer-rows``, whole families in fact, so near-twins stay together);
* ``torch``: today's PyTorch MiniLM (``--runtime torch`` when the CLI has that flag), the
  baseline, on the same subset;
* ``static-sub`` (not in the default): the static model on that subset, for quality measured
  on the same rows as the transformers;
* ``cascade`` (not in the default): the transformer tier on all N rows as a cascade,
  ``--model minilm-static --cascade minilm --runtime onnx-int8``: the static model scores every
  candidate and MiniLM (ONNX Runtime int8) embeds only the rows of the pairs it left uncertain;
* ``cascade-fp32`` (not in the default): the same with ``--runtime onnx``;
* ``cascade-noknn`` (not in the default): ``cascade`` with ``--no-cascade-knn`` (MiniLM rescores
  the static candidates but proposes none);
* ``onnx-int8`` (not in the default): MiniLM through ONNX Runtime int8 on the subset.

A configuration the CLI does not support yet fails: it is reported with its stderr tail and
the others go on. Per configuration it prints:

* wall seconds of the subprocess (imports and model load included) and the job's own total;
* every stage's seconds and rows/s from the run's manifest (``timings_s``);
* embedding titles/s (rows / the embed stage) and its ratio to ``torch``; the part of the embed
  stage spent before its loop (model load, ONNX export or static distillation: a fresh run
  directory has a cold model cache too); the loop's own titles/s (the embeddings manifest's
  ``rows_per_s``) and its ratio to ``torch``;
* the child's peak RSS (``os.wait4`` rusage of the child: its largest single process, not a sum);
* pairwise precision/recall/F1 and B-cubed F1 against the known groups, and the near-twin merge
  rate (share of same-family different-product row pairs put in one group);
* for subset runs, a projection of the time at N rows (model preparation once, the embedding
  loop linear in rows, the other stages from the full-N static run when there is one, else
  linear too): a projection, not a measurement.

A subset holds fewer reuses of each base than the full catalog, so it has fewer hard negatives:
quality on N rows and on the subset are not the same test (``static-sub`` is the like-for-like).

    uv run python bench/scale.py [--rows 1000000] [--configs static,onnx,torch] [--transformer-rows 50000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table
from transfer import cpu_flags, cpu_model  # the transfer bench's CPU lines

from eclip.encoders.onnx import cores as usable_cores
from eclip.evaluation import cluster_metrics

#: The previous release's static 1M run (docs/benchmarks/scale.md, "A 1M-row catalog end to end", issue 32's
#: rerun on this catalog, same generator and seed), printed beside today's as ratios.
PREVIOUS = {
    "label": "previous release (README)",
    "rows": 1_000_000,
    "wall_s": 686.1,
    "peak_rss_gib": 10.76,
    "precision": 0.7754,
    "recall": 0.9560,
    "f1": 0.8563,
    "twin_merge_rate": 0.1814,
    "candidate_recall": None,
    "timings_s": {
        "read": 18.78,
        "embed": 48.07,
        "load_embeddings": 9.89,
        "search": 236.09,
        "candidates": 16.40,
        "score": 44.20,
        "learn": 118.70,
        "group": 131.66,
        "write": 5.70,
        "total": 677.89,
    },
}
#: bump when generation changes, so that an old cached catalog is not reused
GEN_VERSION = 2
CONFIGS = ("static", "onnx", "torch")
EXTRA_CONFIGS = ("static-sub", "cascade", "cascade-fp32", "cascade-noknn", "onnx-int8")
MAX_GROUP = 20
GROUP_P = 0.4  # geometric: mean 1 / p = 2.5 listings per product

NOISE_SUFFIX = (
    " - Free Shipping",
    " (Renewed)",
    " NEW",
    " - Fast Delivery",
    " | Official Store",
    " [Sealed]",
    " - Best Price",
    " - In Stock",
)
NOISE_PREFIX = ("NEW ", "Genuine ", "Original ", "HOT SALE ", "[In Stock] ")
COLOURS = (
    "black",
    "white",
    "silver",
    "grey",
    "gray",
    "blue",
    "navy",
    "red",
    "green",
    "yellow",
    "pink",
    "purple",
    "orange",
    "brown",
    "gold",
    "beige",
    "maroon",
    "olive",
    "teal",
    "charcoal",
    "cream",
    "khaki",
    "bronze",
    "turquoise",
    "lavender",
    "mustard",
)
COLOUR_RE = re.compile(r"\b(" + "|".join(COLOURS) + r")\b", re.IGNORECASE)
QTY_RE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)(\s?)(tb|gb|mb|ml|ltr|litre|l|mg|kg|gms|gm|g|oz|inch|in|mm|cm|w|mah|mp|hz|tablets|tablet|capsules|caps|pcs|'s)(?![a-z])",
    re.IGNORECASE,
)
LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CODE_LETTERS = "ABCDEFGHJKLMNPRSTUVWXZ"


# --------------------------------------------------------------------------------------------
# base titles
# --------------------------------------------------------------------------------------------


def _price(s: str | None) -> float:
    """'$399.00', 'Rs. 392.00', '21990' -> float; nan when none."""
    if not s:
        return float("nan")
    m = re.search(r"\d[\d,]*(?:\.\d+)?", s)
    return float(m.group(0).replace(",", "")) if m else float("nan")


def load_bases(data: Path) -> pl.DataFrame:
    """One row per real product: title, brand (None when unknown), price (nan when unknown)."""
    read = lambda p: pl.read_csv(data / p, infer_schema=False)  # noqa: E731
    parts = []
    abt = read("abt_buy/catalog.csv")
    try:  # a matched Abt/Buy pair is one product: keep its first listing
        m = read("abt_buy/matches.csv")
        drop = set(m["id_b"].to_list()) - set(m["id_a"].to_list())
        abt = abt.filter(~pl.col("id").is_in(list(drop)))
    except FileNotFoundError:
        pass
    parts.append(abt.select(pl.col("name").alias("title"), pl.col("manufacturer").alias("brand"), pl.col("price")))
    wdc = read("wdc_products/offers.csv").unique("product_id", keep="first", maintain_order=True)
    parts.append(wdc.select("title", "brand", "price"))
    net = read("netmeds/products.csv")
    parts.append(net.select("title", pl.col("manufacturer").str.replace(r"^Mfr:\s*", "").alias("brand"), "price"))
    fas = read("fashion/catalog.csv")
    parts.append(fas.select("title", pl.lit(None, pl.String).alias("brand"), pl.lit(None, pl.String).alias("price")))
    df = pl.concat(parts).with_columns(pl.col("title").str.replace_all(r"\s+", " ").str.strip_chars())
    df = df.filter(pl.col("title").str.len_chars() >= 3)
    df = (
        df.with_columns(pl.col("title").str.to_lowercase().alias("_k"))
        .unique("_k", keep="first", maintain_order=True)
        .drop("_k")
    )
    junk = ["", "n/a", "na", "none", "null", "unknown", "-", "generic", "no brand"]
    df = df.with_columns(
        pl.when(pl.col("brand").str.strip_chars().str.to_lowercase().is_in(junk))
        .then(None)
        .otherwise(pl.col("brand").str.strip_chars())
        .alias("brand")
    )
    # brand when known: the source's, else the title's first word when it is a brand seen elsewhere
    known = {b.lower() for b in df["brand"].drop_nulls().to_list() if b and len(b.split()) == 1}
    first = df["title"].str.split(" ").list.first()
    df = df.with_columns(
        pl.when(pl.col("brand").is_not_null() & (pl.col("brand").str.len_chars() > 0))
        .then(pl.col("brand"))
        .when(first.str.to_lowercase().is_in(list(known)))
        .then(first)
        .otherwise(None)
        .alias("brand"),
        pl.col("price").map_elements(_price, return_dtype=pl.Float64).alias("price"),
    )
    return df


# --------------------------------------------------------------------------------------------
# products, near-twins and listings
# --------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def qty_twin(title: str, r: random.Random) -> str | None:
    """The title with one capacity/size number changed (64GB -> 128GB), or None."""
    ms = list(QTY_RE.finditer(title))
    if not ms:
        return None
    m = r.choice(ms)
    v = float(m.group(1))
    if m.group(3).lower() in ("tb", "gb", "mb") and v in LADDER:
        new = r.choice([x for x in LADDER if x != v and x >= 2])
    else:
        new = v * r.choice((2, 0.5, 3, 1.5, 4)) if v >= 2 else v + r.choice((1, 2, 4))
        new = round(new) if new >= 2 else round(new, 1)
        if new == v or new <= 0:
            new = v + 1
    return title[: m.start(1)] + _fmt(new) + title[m.end(1) :]


def colour_twin(title: str, r: random.Random) -> str | None:
    """The title with one colour word changed (Black -> Silver), or None."""
    ms = list(COLOUR_RE.finditer(title))
    if not ms:
        return None
    m = r.choice(ms)
    old = m.group(0)
    new = r.choice([c for c in COLOURS if c != old.lower() and {c, old.lower()} != {"grey", "gray"}])
    new = new.upper() if old.isupper() else new.capitalize() if old[0].isupper() else new
    return title[: m.start()] + new + title[m.end() :]


def _typo(word: str, r: random.Random) -> str:
    i = r.randrange(len(word) - 1)
    op = r.randrange(4)
    if op == 0:  # swap two letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 1:  # drop a letter
        return word[:i] + word[i + 1 :]
    if op == 2:  # double a letter
        return word[: i + 1] + word[i] + word[i + 1 :]
    return word[:i] + r.choice("aeiounrst") + word[i + 1 :]  # substitute


def edit_title(title: str, r: random.Random) -> str:
    """One realistic listing of a product: at least one edit, numbers and codes never touched
    (they make another product)."""
    w = title.split(" ")
    done = False
    while not done:
        if len(w) >= 3 and r.random() < 0.3:  # reorder: move one word, or swap two neighbours
            i, j = r.randrange(len(w)), r.randrange(len(w))
            if i != j:
                if r.random() < 0.5:
                    w.insert(j, w.pop(i))
                else:
                    k = min(i, len(w) - 2)
                    w[k], w[k + 1] = w[k + 1], w[k]
                done = True
        if len(w) >= 3 and r.random() < 0.2:  # drop the brand (first word)
            w = w[1:]
            done = True
        if r.random() < 0.35:  # one or two letter typos in alphabetic words
            cand = [i for i, x in enumerate(w) if len(x) >= 4 and x.isalpha()]
            for _ in range(1 + (r.random() < 0.3)):
                if cand:
                    i = r.choice(cand)
                    w[i] = _typo(w[i], r)
                    done = True
        if r.random() < 0.3:  # shop noise
            if r.random() < 0.7:
                w = w + NOISE_SUFFIX[r.randrange(len(NOISE_SUFFIX))].split(" ")[1:]
            else:
                w = NOISE_PREFIX[r.randrange(len(NOISE_PREFIX))].split(" ")[:-1] + w
            done = True
        if r.random() < 0.25:  # case
            t = " ".join(w)
            c = r.randrange(3)
            t = t.lower() if c == 0 else t.upper() if c == 1 else t.title()
            w = t.split(" ")
            done = True
    return " ".join(x for x in w if x)


def generate(n: int, seed: int, data: Path, console: Console) -> pl.DataFrame:
    """The synthetic catalog: ``n`` rows, columns id, title, brand, price, group, family, variant."""
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    bases = load_bases(data)
    b_title, b_brand = bases["title"].to_list(), bases["brand"].to_list()
    b_price = bases["price"].to_numpy().copy()
    miss = ~np.isfinite(b_price) | (b_price <= 0)
    b_price[miss] = np.round(rng.lognormal(3.5, 1.0, miss.sum()), 2)
    nb = len(b_title)

    # listings per product: geometric sizes, capped, until n rows
    sizes = np.minimum(rng.geometric(GROUP_P, size=int(n / 2.4) + 64), MAX_GROUP)
    while sizes.sum() < n:
        sizes = np.concatenate([sizes, np.minimum(rng.geometric(GROUP_P, size=1024), MAX_GROUP)])
    cut = int(np.searchsorted(np.cumsum(sizes), n))  # product index holding row n-1
    sizes = sizes[: cut + 1]
    sizes[-1] -= int(sizes.sum() - n)
    n_products = len(sizes)

    # families: a base (reused bases get a distinct code) and its near-twins, until n_products
    codes = rng.permutation(len(CODE_LETTERS) ** 2 * 10_000)
    p_title, p_brand, p_price, p_family, p_variant = [], [], [], [], []
    order = rng.permutation(nb)
    used = {t.lower() for t in b_title}  # a near-twin may not be another product's title
    f = 0
    while len(p_title) < n_products:
        cycle, pos = divmod(f, nb)
        if pos == 0 and cycle:
            order = rng.permutation(nb)
        b = int(order[pos])
        title, price = b_title[b], float(b_price[b])
        if cycle:  # a reuse: another product of the same line, with its own model code
            c = int(codes[f - nb])
            code = f"{CODE_LETTERS[c // 220_000]}{CODE_LETTERS[c // 10_000 % 22]}-{c % 10_000:04d}"
            title = title + (" " + code if r.random() < 0.5 else f" - {code}" if r.random() < 0.6 else f" ({code})")
            used.add(title.lower())
            price = round(price * float(np.exp(r.gauss(0, 0.5))), 2)
        members = [(title, price, "base")]
        u = r.random()
        extra = 2 if u < 0.12 else 1 if u < 0.45 else 0
        for _ in range(extra):  # near-twins: another capacity or colour, a different product
            kind = r.choice(("qty", "colour"))
            t = qty_twin(title, r) if kind == "qty" else colour_twin(title, r)
            if t is None:
                kind = "colour" if kind == "qty" else "qty"
                t = qty_twin(title, r) if kind == "qty" else colour_twin(title, r)
            if t is not None and t.lower() not in used:
                used.add(t.lower())
                members.append((t, round(price * (1.3 if kind == "qty" else 1.0) * (1 + r.gauss(0, 0.05)), 2), kind))
        for t, p, kind in members:
            p_title.append(t)
            p_brand.append(b_brand[b])
            p_price.append(p)
            p_family.append(f)
            p_variant.append(kind)
        f += 1
    # the last family may overshoot: drop its extra products (the sizes were drawn for n_products)
    del p_title[n_products:], p_brand[n_products:], p_price[n_products:], p_family[n_products:], p_variant[n_products:]

    # group ids in a shuffled family order, so that the first groups are a random sample of
    # whole families (subsets keep near-twins together)
    fam = np.asarray(p_family, dtype=np.int64)
    n_fam = int(fam.max()) + 1
    fam_rank = rng.permutation(n_fam)
    prod_order = np.lexsort((np.arange(n_products), fam_rank[fam]))  # products by shuffled family
    group_of = np.empty(n_products, dtype=np.int64)
    group_of[prod_order] = np.arange(n_products)

    # listings: the first of each product is its clean title, the others edits
    row_prod = np.repeat(np.arange(n_products), sizes)
    first = np.ones(n, dtype=bool)
    first[1:] = row_prod[1:] != row_prod[:-1]
    titles = [p_title[p] if fst else edit_title(p_title[p], r) for p, fst in zip(row_prod.tolist(), first.tolist())]
    price = np.asarray(p_price)[row_prod] * (1 + rng.normal(0, 0.05, n))
    price = np.where(rng.random(n) < 0.05, np.nan, np.round(price, 2))
    brand = pl.Series("brand", p_brand, dtype=pl.String).gather(row_prod)
    brand = pl.select(pl.when(pl.lit(pl.Series(rng.random(n) < 0.1))).then(None).otherwise(brand)).to_series()

    df = pl.DataFrame(
        {
            "title": titles,
            "brand": brand,
            "price": price,
            "group": group_of[row_prod],
            "family": fam_rank[fam][row_prod],
            "variant": pl.Series(p_variant, dtype=pl.Categorical).gather(row_prod),
        }
    ).with_columns(pl.col("price").fill_nan(None))
    df = df.sample(fraction=1.0, shuffle=True, seed=seed)  # listings in no particular order
    df = df.with_columns(("r" + pl.int_range(n, dtype=pl.Int64).cast(pl.String).str.zfill(len(str(n)))).alias("id"))
    console.print(f"[dim]{nb:,} base titles -> {n_fam:,} families, {n_products:,} products (groups), {n:,} rows[/]")
    return df.select("id", "title", "brand", "price", "group", "family", "variant")


def catalog_path(work: Path, n: int, seed: int) -> Path:
    return work / f"scale_n{n}_seed{seed}_v{GEN_VERSION}.parquet"


def ensure_catalog(work: Path, n: int, seed: int, data: Path, console: Console) -> tuple[Path, float | None]:
    """The cached catalog, made when absent; returns it and the seconds spent making it."""
    path = catalog_path(work, n, seed)
    if path.exists():
        console.print(f"reusing {path} ({path.stat().st_size / 2**20:.1f} MiB)")
        return path, None
    t0 = time.perf_counter()
    df = generate(n, seed, data, console)
    tmp = path.with_suffix(".tmp")
    df.write_parquet(tmp)
    tmp.replace(path)
    sec = time.perf_counter() - t0
    console.print(f"generated {path} in {sec:.1f} s ({path.stat().st_size / 2**20:.1f} MiB)")
    return path, sec


def ensure_subset(full: Path, rows: int) -> Path:
    """The first whole groups of ``full`` (group ids follow a shuffled family order, so these are
    whole families) holding at least ``rows`` rows."""
    path = full.with_name(f"{full.stem}_sub{rows}.parquet")
    if not path.exists():
        df = pl.read_parquet(full)
        sizes = df.group_by("group").len().sort("group")
        last = int(np.searchsorted(np.cumsum(sizes["len"].to_numpy()), rows))
        # extend to the end of the family of the last group, so near-twins stay together
        cut_group = int(sizes["group"][min(last, len(sizes) - 1)])
        fam = df.filter(pl.col("group") == cut_group)["family"][0]
        upto = int(df.filter(pl.col("family") == fam)["group"].max())
        tmp = path.with_suffix(".tmp")
        df.filter(pl.col("group") <= upto).write_parquet(tmp)
        tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------------
# running the CLI
# --------------------------------------------------------------------------------------------


def eclip_cmd() -> list[str]:
    """The ``eclip`` console script beside this interpreter, else the same entry point via -c
    (``python -m eclip.cli`` does not work: the package has no ``__main__``)."""
    script = Path(sys.executable).parent / "eclip"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from eclip.cli import main; main()"]


def dedupe_help() -> str:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run([*eclip_cmd(), "dedupe", "--help"], capture_output=True, text=True, env=env).stdout


def run_child(cmd: list[str], log: Path, timeout: float | None) -> dict:
    """Run ``cmd``; wall seconds, exit code, peak RSS (GiB) of the child from ``os.wait4``."""
    t0 = time.perf_counter()
    with log.open("w") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "150"})
        timed_out = False
        if timeout:
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - t0 > timeout:
                    p.kill()
                    timed_out = True
                    pid, status, ru = os.wait4(p.pid, 0)
                    break
                time.sleep(0.2)
        else:
            _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": time.perf_counter() - t0,
        "rc": p.returncode,
        "timed_out": timed_out,
        "peak_rss_gib": ru.ru_maxrss / 2**20,
    }


def twin_merge_rate(pred: np.ndarray, gold: np.ndarray, family: np.ndarray) -> float | None:
    """Share of pairs of rows of the same family but different products (near-twins, or a base
    and its twin) that the run put in one group."""
    df = pl.DataFrame({"p": pred, "g": gold, "f": family})
    c2 = lambda s: (s * (s - 1) // 2).sum()  # noqa: E731
    fam_pairs = c2(df.group_by("f").len()["len"]) - c2(df.group_by("g").len()["len"])
    if not fam_pairs:
        return None
    joined = c2(df.group_by("f", "p").len()["len"]) - c2(df.group_by("f", "p", "g").len()["len"])
    return float(joined / fam_pairs)


def evaluate(catalog: Path, run: Path) -> dict:
    cat = pl.read_parquet(catalog, columns=["id", "group", "family"])
    got = pl.read_parquet(run / "groups.parquet", columns=["id", "group_id"]).with_columns(pl.col("id").cast(pl.String))
    j = cat.join(got, on="id", how="left")
    missing = int(j["group_id"].null_count())
    pred = j["group_id"].rank("dense").fill_null(-1).cast(pl.Int64).to_numpy()
    if missing:  # rows absent from groups.parquet: each its own group
        pred = np.where(pred < 0, pred.max() + 1 + np.arange(len(pred)), pred)
    gold, fam = j["group"].to_numpy(), j["family"].to_numpy()
    m = cluster_metrics(pred, gold).as_dict()
    return {
        **m,
        "twin_merge_rate": twin_merge_rate(pred, gold, fam),
        "rows_missing_from_groups": missing,
        "candidate_recall": candidate_recall(cat, run),
    }


def candidate_recall(cat: pl.DataFrame, run: Path) -> float | None:
    """Share of the gold pairs (two rows of one product) among the run's candidate pairs."""
    path = run / "pairs.parquet"
    if not path.exists():
        return None
    group = cat.select(pl.col("id").cast(pl.String), "group")
    pairs = pl.read_parquet(path, columns=["id_a", "id_b"])
    found = (
        pairs.join(group.rename({"id": "id_a", "group": "ga"}), on="id_a")
        .join(group.rename({"id": "id_b", "group": "gb"}), on="id_b")
        .filter(pl.col("ga") == pl.col("gb"))
        .height
    )
    sizes = cat.group_by("group").len()["len"].to_numpy().astype(np.int64)
    total = int((sizes * (sizes - 1) // 2).sum())
    return found / total if total else None


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"comma-separated among {', '.join(CONFIGS + EXTRA_CONFIGS)}"
    )
    ap.add_argument(
        "--transformer-rows",
        type=int,
        default=50_000,
        help="rows (whole groups) the onnx/torch configs run on when --rows is larger",
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "eclip-bench-scale",
        help="cache of catalogs and run directories",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds after which a config's subprocess is killed (reported as failed)",
    )
    ap.add_argument("--generate-only", action="store_true", help="make (or find) the catalog, print a summary, stop")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if c not in CONFIGS + EXTRA_CONFIGS]
    if bad:
        ap.error(f"unknown config(s) {bad}; choose among {CONFIGS + EXTRA_CONFIGS}")
    console = Console(width=200)
    cores = usable_cores()
    console.print(
        f"CPU: {cpu_model()}, {cores} cores usable ({os.cpu_count()} online), flags {cpu_flags()}; Python {platform.python_version()}"
    )
    args.work.mkdir(parents=True, exist_ok=True)

    full, gen_s = ensure_catalog(args.work, args.rows, args.seed, args.data, console)
    if args.generate_only:
        df = pl.read_parquet(full)
        sizes = df.group_by("group").len()["len"]
        console.print(
            f"{len(df):,} rows, {len(sizes):,} groups (mean size {sizes.mean():.2f}, max {sizes.max()}), "
            f"{df['family'].n_unique():,} families; variants: "
            + ", ".join(f"{k} {v:,}" for k, v in df.group_by("variant").agg(pl.col("group").n_unique()).iter_rows())
            + f" products; brand known {1 - df['brand'].null_count() / len(df):.0%}, price known {1 - df['price'].null_count() / len(df):.0%}"
        )
        return
    sub = ensure_subset(full, args.transformer_rows) if args.rows > args.transformer_rows else full
    has_runtime = "--runtime" in dedupe_help()

    base = ["--text-cols", "title", "--id-col", "id", "--brand-col", "brand", "--price-col", "price"]
    plan = {
        "static": (full, ["--model", "minilm-static"]),
        "static-sub": (sub, ["--model", "minilm-static"]),
        "onnx": (sub, ["--model", "minilm", "--runtime", "onnx"]),
        "torch": (sub, ["--model", "minilm", *(["--runtime", "torch"] if has_runtime else [])]),
        "onnx-int8": (sub, ["--model", "minilm", "--runtime", "onnx-int8"]),
        "cascade": (full, ["--model", "minilm-static", "--cascade", "minilm", "--runtime", "onnx-int8"]),
        "cascade-fp32": (full, ["--model", "minilm-static", "--cascade", "minilm", "--runtime", "onnx"]),
        "cascade-noknn": (
            full,
            ["--model", "minilm-static", "--cascade", "minilm", "--runtime", "onnx-int8", "--no-cascade-knn"],
        ),
    }
    results: dict[str, dict] = {}
    for name in configs:
        catalog, extra = plan[name]
        run = args.work / f"run_{full.stem}_{name}"
        if run.exists():  # a cold embedding cache every time
            shutil.rmtree(run)
        run.mkdir(parents=True)
        cmd = [*eclip_cmd(), "dedupe", str(catalog), *base, *extra, "--out", str(run)]
        rows = pl.scan_parquet(catalog).select(pl.len()).collect().item()
        console.print(f"[bold]{name}[/]: {rows:,} rows: {' '.join(cmd[len(eclip_cmd()) :])}")
        res = {
            "config": name,
            "rows": rows,
            "catalog": str(catalog),
            "args": cmd[len(eclip_cmd()) :],
            **run_child(cmd, run.parent / f"{run.name}.log", args.timeout),
        }
        log = (run.parent / f"{run.name}.log").read_text(errors="replace")
        if res["rc"] != 0 or not (run / "manifest.json").exists():
            res["failed"] = True
            res["stderr_tail"] = "\n".join(log.strip().splitlines()[-15:])  # stdout and stderr, interleaved
            console.print(
                f"  [red]failed[/] (exit {res['rc']}{', timed out' if res['timed_out'] else ''}) after {res['wall_s']:.1f} s"
            )
        else:
            man = json.loads((run / "manifest.json").read_text())
            res["timings_s"] = man.get("timings_s", {})
            res["memory_by_stage"] = man.get("memory_by_stage", {})
            res["rows_per_s"] = man.get("rows_per_s", {})
            res["model"] = man.get("model")
            emb_man = (
                json.loads((run / "embeddings" / "manifest.json").read_text())
                if (run / "embeddings" / "manifest.json").exists()
                else {}
            )
            res["runtime"] = emb_man.get("runtime") or (res["model"] or {}).get("runtime")
            res["model_runtime"] = f"{(res['model'] or {}).get('name', '?')} / {res['runtime'] or 'not recorded'}"
            # the embedding loop alone (model loaded and prepared), from the embeddings manifest
            res["loop_titles_per_s"] = emb_man.get("rows_per_s")
            res["loop_s"] = emb_man.get("seconds")
            res["quality"] = evaluate(catalog, run)
            res["cascade"] = man.get("matching", {}).get("cascade")
            emb = res["timings_s"].get("embed")
            res["embed_titles_per_s"] = rows / emb if emb else None
            res["model_prep_s"] = emb - res["loop_s"] if emb and res["loop_s"] is not None else None
            console.print(
                f"  done in {res['wall_s']:.1f} s, peak RSS {res['peak_rss_gib']:.2f} GiB, pair F1 {res['quality']['f1']:.4f}"
            )
            if res["cascade"] and not res["cascade"].get("skipped"):
                cc = res["cascade"]
                console.print(
                    f"  cascade: {cc['rows']:,} rows ({cc['row_share']:.1%}) of {cc['uncertain_pairs']:,} uncertain pairs "
                    f"embedded by {cc['model']} ({cc['runtime']}) in {cc['embed_s']:.0f} s; {cc['refined_pairs']:,} pairs rescored"
                )
        results[name] = res

    # ratios to torch, and projections to N rows for subset runs
    torch_rate = results.get("torch", {}).get("embed_titles_per_s")
    torch_loop = results.get("torch", {}).get("loop_titles_per_s")
    static_full = (
        results.get("static")
        if not results.get("static", {}).get("failed") and results.get("static", {}).get("rows") == args.rows
        else None
    )
    for res in results.values():
        if res.get("failed"):
            continue
        rate = res["embed_titles_per_s"]
        res["embed_ratio_to_torch"] = rate / torch_rate if rate and torch_rate else None
        loop = res["loop_titles_per_s"]
        res["loop_ratio_to_torch"] = loop / torch_loop if loop and torch_loop else None
        if res["rows"] < args.rows and rate:
            t = res["timings_s"]
            if loop:  # model preparation once, then the loop's rate
                embed_part, e_basis = (
                    res["model_prep_s"] + args.rows / loop,
                    "model preparation once + the embedding loop linear in rows",
                )
            else:
                embed_part, e_basis = args.rows / rate, "the embed stage linear in rows"
            if static_full:  # the stages after embedding hardly depend on the model (but the static vectors are 256-d)
                rest, r_basis = (
                    static_full["timings_s"]["total"] - static_full["timings_s"].get("embed", 0.0),
                    "the other stages as measured in the full-N static run",
                )
            else:
                rest, r_basis = (
                    (t["total"] - t.get("embed", 0.0)) * args.rows / res["rows"],
                    "the other stages linear in rows (search and grouping are not quite linear)",
                )
            res["projected_total_s_at_N"] = embed_part + rest
            res["projection_basis"] = f"{e_basis}; {r_basis}"

    stages: list[str] = []
    for res in results.values():
        stages += [k for k in res.get("timings_s", {}) if k != "total" and k not in stages]
    f = lambda x, fmt: "-" if x is None else format(x, fmt)  # noqa: E731
    table = Table(
        title=f"eclip dedupe at scale: synthetic catalog of {args.rows:,} rows (seed {args.seed}), {cores} CPU cores, cold embedding cache"
    )
    cols = [
        "config",
        "model / runtime",
        "rows",
        "wall s",
        "job s",
        "embed titles/s",
        "/ torch",
        "prep s",
        "loop titles/s",
        "/ torch ",
        "peak RSS GiB",
        "P",
        "R",
        "pair F1",
        "B3 F1",
        "twin merge",
        "projected s at N",
    ]
    for c in cols:
        table.add_column(c, justify="left" if c in ("config", "model / runtime") else "right")
    per_stage = Table(title="seconds per stage (the run's manifest timings_s) and rows/s")
    for c in ("config", "rows", *stages, "total"):
        per_stage.add_column(c, justify="left" if c == "config" else "right")
    for name, res in results.items():
        if res.get("failed"):
            table.add_row(
                f"[red]{name} (failed)[/]",
                " ".join(plan[name][1]),
                f"{res['rows']:,}",
                f"{res['wall_s']:.1f}",
                *["-"] * (len(cols) - 4),
            )
            continue
        q, t = res["quality"], res["timings_s"]
        table.add_row(
            name,
            res["model_runtime"],
            f"{res['rows']:,}",
            f"{res['wall_s']:.1f}",
            f"{t.get('total', 0):.1f}",
            f(res["embed_titles_per_s"], ",.0f"),
            f(res["embed_ratio_to_torch"], ".2f") + ("x" if res["embed_ratio_to_torch"] else ""),
            f(res["model_prep_s"], ".1f"),
            f(res["loop_titles_per_s"], ",.0f"),
            f(res["loop_ratio_to_torch"], ".2f") + ("x" if res["loop_ratio_to_torch"] else ""),
            f"{res['peak_rss_gib']:.2f}",
            f"{q['precision']:.4f}",
            f"{q['recall']:.4f}",
            f"{q['f1']:.4f}",
            f"{q['bcubed_f1']:.4f}",
            f(q["twin_merge_rate"], ".4f"),
            f"{res['projected_total_s_at_N']:,.0f} (projection)" if "projected_total_s_at_N" in res else "measured",
        )
        per_stage.add_row(
            name,
            f"{res['rows']:,}",
            *(f"{t[s]:.2f} ({res['rows'] / t[s]:,.0f}/s)" if t.get(s) else f(t.get(s), ".2f") for s in stages),
            f"{t.get('total', 0):.2f}",
        )
    console.print(table)
    if per_stage.row_count:
        console.print(per_stage)
    memory = Table(
        title="memory at the end of each stage: resident now / peak so far, GiB (the manifest's memory_by_stage)"
    )
    for c in ("config", *stages):
        memory.add_column(c, justify="left" if c == "config" else "right")
    for name, res in results.items():
        mem = res.get("memory_by_stage") or {}
        if mem:
            memory.add_row(
                name, *(f"{mem[s]['rss_gib']:.2f} / {mem[s]['peak_gib']:.2f}" if s in mem else "-" for s in stages)
            )
    if memory.row_count:
        console.print(memory)
    now = results.get("static")
    if now and not now.get("failed") and now["rows"] == PREVIOUS["rows"]:
        prev = Table(title=f"static, {PREVIOUS['rows']:,} rows: this run beside the {PREVIOUS['label']}")
        for c in ("figure", "previous", "now", "now / previous"):
            prev.add_column(c, justify="left" if c == "figure" else "right")
        q = now["quality"]
        figures = [
            ("wall s", PREVIOUS["wall_s"], now["wall_s"]),
            ("peak RSS GiB", PREVIOUS["peak_rss_gib"], now["peak_rss_gib"]),
            *((f"{s} s", PREVIOUS["timings_s"].get(s), now["timings_s"].get(s)) for s in PREVIOUS["timings_s"]),
            *((k, PREVIOUS[k], q.get(k)) for k in ("precision", "recall", "f1", "twin_merge_rate", "candidate_recall")),
        ]
        for label, before, after in figures:
            ratio = f"{after / before:.2f}x" if before and after is not None else "-"
            prev.add_row(label, f(before, ".4g"), f(after, ".4g"), ratio)
        console.print(prev)
    notes = [
        "wall s: the subprocess (imports, model load, everything); job s: the manifest's "
        "total; embed titles/s: rows / the embed stage (model load and preparation included)",
        "prep s: the embed stage less the embedding loop (model load, ONNX export or static distillation "
        "into the run's cold cache); loop titles/s: the loop alone (embeddings manifest rows_per_s)",
        "peak RSS: os.wait4 rusage of the child (its largest single process)",
        "twin merge: share of same-family different-product row pairs put in one group (near-twins merged; lower is better)",
    ]
    basis = next((r["projection_basis"] for r in results.values() if "projection_basis" in r), None)
    if basis:
        notes.append(f"projected s at N: a projection from the subset run, not a measurement ({basis})")
    if not has_runtime and "torch" in results:
        notes.append(
            "[yellow]this CLI has no --runtime flag: 'torch' ran the default runtime, which may not be PyTorch (see model / runtime)[/]"
        )
    console.print("\n".join(f"[dim]{n}[/]" for n in notes))
    for name, res in results.items():
        if res.get("failed"):
            console.print(
                f"[red]{name} failed[/] (exit {res['rc']}): eclip {' '.join(res['args'])}\n[dim]{res['stderr_tail']}[/]"
            )
    if args.json:
        out = {
            "cpu": cpu_model(),
            "cpu_flags": cpu_flags(),
            "cores": cores,
            "rows": args.rows,
            "seed": args.seed,
            "catalog": str(full),
            "generation_s": gen_s,
            "configs": results,
        }
        args.json.write_text(json.dumps(out, indent=2, default=str))
        console.print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
