"""Per-cluster summaries: size, medoid, exemplars and top terms (class-based TF-IDF)."""

from __future__ import annotations

import numpy as np
import polars as pl

#: Words that say nothing about a product in titles (added to scikit-learn's English list).
_TITLE_STOP = frozenset({"new", "pack", "pcs", "set", "size", "with", "for", "and", "the"})


def class_tfidf_terms(texts: list[str], labels: np.ndarray, top: int = 8) -> dict[int, list[str]]:
    """Top terms of each cluster by class-based TF-IDF.

    c-TF-IDF (Grootendorst, "BERTopic", arXiv 2203.05794, section 3.3): all titles of a
    cluster form one document; term ``t`` in cluster ``c`` weighs
    ``tf(t, c) / |c| * log(1 + A / f(t))``, with ``tf(t, c)`` its count in the cluster,
    ``|c|`` the cluster's word count, ``f(t)`` its count over all clusters and ``A`` the
    average word count per cluster. Tokenising and counting are scikit-learn's
    ``CountVectorizer`` (English stop words removed, unigrams and bigrams).

    Args:
        texts: ``n`` titles. labels: ``(n,)`` int cluster ids, ``-1`` (noise) ignored.
        top: terms per cluster.

    Returns:
        ``{cluster_id: [term, ...]}``, best first; clusters whose titles have no terms map to ``[]``.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    labels = np.asarray(labels)
    clusters = np.unique(labels[labels >= 0])
    out: dict[int, list[str]] = {int(c): [] for c in clusters}
    if not len(clusters):
        return out
    joined = (
        pl.DataFrame({"c": labels, "t": [t or "" for t in texts]})
        .filter(pl.col("c") >= 0)
        .group_by("c")
        .agg(pl.col("t").str.join(" "))
        .sort("c")
    )
    vec = CountVectorizer(
        stop_words=list(ENGLISH_STOP_WORDS | _TITLE_STOP),
        ngram_range=(1, 2),
        token_pattern=r"(?u)\b[^\W_][\w\-]+\b",
        lowercase=True,
    )
    try:
        counts = vec.fit_transform(joined["t"].to_list()).tocsr().astype(np.float64)
    except ValueError:  # every title empty or stop words only
        return out
    words = np.asarray(counts.sum(axis=1)).ravel()
    freq = np.asarray(counts.sum(axis=0)).ravel()
    idf = np.log1p(words.mean() / np.maximum(freq, 1.0))
    terms = vec.get_feature_names_out()
    for row, c in enumerate(joined["c"].to_list()):
        lo, hi = counts.indptr[row], counts.indptr[row + 1]
        if hi == lo:
            continue
        cols = counts.indices[lo:hi]
        w = counts.data[lo:hi] / max(words[row], 1.0) * idf[cols]
        best = cols[np.lexsort((cols, -w))][:top]
        out[int(c)] = [str(terms[j]) for j in best]
    return out


def medoids(
    vectors: np.ndarray, labels: np.ndarray, probability: np.ndarray, exemplars: int = 5
) -> dict[int, tuple[int, list[int], float]]:
    """Each cluster's medoid row, exemplar rows and cohesion.

    For L2-normalised vectors, the row with the largest summed cosine to its cluster
    (``x_i . sum_j x_j``) is the exact medoid under cosine distance; exemplars are the rows of
    highest HDBSCAN membership probability, ties broken by cosine to that sum.

    Args:
        vectors: ``(n, d)`` float32, L2-normalised. labels: ``(n,)`` cluster ids, ``-1`` noise.
        probability: ``(n,)`` membership strengths. exemplars: rows listed per cluster.

    Returns:
        ``{cluster_id: (medoid_row, exemplar_rows, cohesion)}``; cohesion is the mean cosine of
        the members to the normalised cluster mean, in [-1, 1].
    """
    labels = np.asarray(labels)
    keep = np.flatnonzero(labels >= 0)
    out: dict[int, tuple[int, list[int], float]] = {}
    if not len(keep):
        return out
    order = keep[np.argsort(labels[keep], kind="stable")]
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for members in np.split(order, bounds):
        x = vectors[members].astype(np.float32)
        total = x.sum(axis=0)
        sims = x @ total
        norm = float(np.linalg.norm(total))
        cohesion = float(sims.mean() / norm) if norm > 0 else 0.0
        medoid = int(members[int(np.argmax(sims))])
        ex = members[np.lexsort((-sims, -probability[members]))][:exemplars]
        out[int(labels[members[0]])] = (medoid, [int(i) for i in ex], cohesion)
    return out


SUMMARY_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "cluster_id": pl.Int64,
    "size": pl.Int64,
    "medoid_id": pl.String,
    "medoid_title": pl.String,
    "exemplar_ids": pl.List(pl.String),
    "top_terms": pl.List(pl.String),
    "mean_probability": pl.Float32,
    "cohesion": pl.Float32,
}


def summary_frame(
    x: np.ndarray,
    ids: list[str],
    texts: list[str],
    labels: np.ndarray,
    probability: np.ndarray,
    top_terms: int = 8,
    exemplars: int = 5,
) -> pl.DataFrame:
    """``cluster_summary.parquet``: one row per cluster ``0..c-1``.

    Args:
        x: ``(n, d)`` float32, L2-normalised vectors that were clustered.
        ids, texts: the ``n`` rows' ids and titles.
        labels: ``(n,)`` int64 cluster per row (``-1`` noise), clusters numbered ``0..c-1``.
        probability: ``(n,)`` float32 HDBSCAN membership strength.
        top_terms, exemplars: how many top terms (:func:`class_tfidf_terms`) and exemplar
            ids (:func:`medoids`) to keep per cluster.

    Returns:
        Columns cluster_id, size, medoid_id, medoid_title, exemplar_ids, top_terms,
        mean_probability, cohesion.
    """
    terms = class_tfidf_terms(texts, labels, top_terms)
    reps = medoids(x, labels, probability, exemplars)
    member = labels >= 0
    sizes = np.bincount(labels[member]).astype(np.int64)
    mean_prob = np.bincount(labels[member], weights=probability[member]) / np.maximum(sizes, 1)
    c = len(sizes)
    return pl.DataFrame(
        {
            "cluster_id": np.arange(c, dtype=np.int64),
            "size": sizes,
            "medoid_id": [ids[reps[i][0]] for i in range(c)],
            "medoid_title": [texts[reps[i][0]] for i in range(c)],
            "exemplar_ids": [[ids[j] for j in reps[i][1]] for i in range(c)],
            "top_terms": [terms.get(i, []) for i in range(c)],
            "mean_probability": mean_prob.astype(np.float32),
            "cohesion": np.array([reps[i][2] for i in range(c)], dtype=np.float32),
        },
        schema=SUMMARY_SCHEMA,
    )


def with_gold_purity(summary: pl.DataFrame, cluster_id: np.ndarray, gold: np.ndarray) -> pl.DataFrame:
    """``summary`` with ``gold_majority_rows`` (rows of the cluster's most common gold label)
    and ``gold_purity`` (that count over the cluster's size, float32).

    Args:
        cluster_id: ``(n,)`` int64 cluster per row, ``-1`` noise. gold: ``(n,)`` gold labels.
    """
    majority = (
        pl.DataFrame({"c": cluster_id, "g": gold})
        .filter(pl.col("c") >= 0)
        .group_by("c", "g")
        .len()
        .sort(["c", "len"], descending=[False, True])
        .group_by("c", maintain_order=True)
        .first()
    )
    return summary.join(
        majority.select(pl.col("c").alias("cluster_id"), pl.col("len").alias("gold_majority_rows")),
        on="cluster_id",
        how="left",
    ).with_columns((pl.col("gold_majority_rows") / pl.col("size")).cast(pl.Float32).alias("gold_purity"))
