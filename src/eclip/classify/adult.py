"""Adult-content filter: a zero-shot margin of "adult or sexual-wellness product" per row.

Each row's vector (text, image or fused) is compared with two built-in concept sets, each
concept written into the zero-shot prompt templates and ensembled
(:mod:`eclip.classify.zeroshot`):

* **adult** (:data:`ADULT_CONCEPTS`): the Mature > Erotic branch of Google's product
  taxonomy (``taxonomy.en-US.txt``: Erotic, Erotic Books, Erotic Clothing, Erotic DVDs &
  Videos, Erotic Food & Edibles, Erotic Games, Erotic Magazines, Pole Dancing Kits, Sex
  Toys), the two sexual-health leaves of its Health & Beauty branch (Health Care > Condoms,
  Personal Care > Personal Lubricants), and the sub-categories that pharmacy and marketplace
  shops list under "Sexual Wellness" (condoms, lubricants and massage gels, massagers and
  vibrators, sexual health and stamina supplements, delay sprays);
* **ordinary** (:func:`general_concepts`): every other category of Google's product taxonomy,
  at every level (5,700+ names), so that a product has its own category to be nearest to:
  "Playboy Men Grey Flip Flops" is nearer "Thongs & Flip-Flops" than "Erotic", where against a few
  dozen top-level categories it was nearer "Erotic" than anything else.

The score is the **margin**: the cosine to the nearest adult concept minus the cosine to the
nearest ordinary category. Above :data:`BOUNDARY` (0) an adult concept is the row's nearest
concept of all. Google's Mature branch also holds Weapons; it is left out, as it is not adult
content in the sense of this filter.

Where to flag depends on the catalog: the filter fits the catalog's margins as a two-class
mixture, estimates its adult base rate (:mod:`eclip.classify.base_rate`), lets the rows it is
sure of raise their lookalikes (:mod:`eclip.classify.second_pass`) and picks the threshold
whose expected precision reaches the target, with intervals on precision and recall over the
base rate's doubt (:mod:`eclip.classify.intervals`); labelled rows can calibrate it instead,
or train a few-shot probe on them (:mod:`eclip.classify.fewshot`). The concept vectors are
embedded once per model and runtime, and shipped for the bundled model
(:mod:`eclip.classify.concepts`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from eclip.classify.labels import parse_labels
from eclip.classify.zeroshot import DEFAULT_TEMPLATES, label_vectors

ADULT_CONCEPTS: tuple[str, ...] = (
    # Google product taxonomy, Mature > Erotic and its children
    "Erotic",
    "Erotic Books",
    "Erotic Clothing",
    "Erotic DVDs & Videos",
    "Erotic Food & Edibles",
    "Erotic Games",
    "Erotic Magazines",
    "Pole Dancing Kits",
    "Sex Toys",
    # Google product taxonomy, Health & Beauty
    "Condoms",
    "Personal Lubricants",
    # shops' "Sexual Wellness" sub-categories
    "Sexual Wellness",
    "Lubricants & Massage Gels",
    "Personal Massagers & Vibrators",
    "Sexual Health & Stamina Supplements",
    "Delay Sprays",
)

#: Google's product taxonomy (Mature branch left out); the last level of each path is an
#: ordinary category (:func:`general_concepts`).
TAXONOMY_FILE = Path(__file__).parent / "data" / "google_product_taxonomy.txt"
#: The margin at which an adult concept becomes a row's nearest concept: the boundary the
#: base-rate mixture keeps its classes on either side of (:mod:`eclip.classify.base_rate`).
BOUNDARY = 0.0


@functools.cache
def general_concepts() -> tuple[str, ...]:
    """The ordinary categories adult concepts compete with: the last level of every path of
    Google's product taxonomy (:data:`TAXONOMY_FILE`, 5,700+ names from "Dog Beds" to
    "Thongs & Flip-Flops"), each once, in file order, without the two that are adult concepts here
    (Condoms, Personal Lubricants)."""
    names = dict.fromkeys(p[-1] for p in parse_labels(TAXONOMY_FILE).paths)
    return tuple(n for n in names if n not in ADULT_CONCEPTS)


def concept_names() -> list[str]:
    """Every concept, the adult ones first, in the order of :func:`concept_vectors`' rows."""
    return list(ADULT_CONCEPTS) + list(general_concepts())


def concept_vectors(
    encode: Callable[[list[str]], np.ndarray], templates: Sequence[str] = DEFAULT_TEMPLATES
) -> np.ndarray:
    """``(len(ADULT_CONCEPTS) + len(general_concepts()), d)`` float32 L2-normalised concept
    vectors, adult concepts first (see :func:`eclip.classify.zeroshot.label_vectors`)."""
    return label_vectors(encode, concept_names(), templates)


def adult_margins(
    x: np.ndarray, concepts: np.ndarray, n_adult: int = len(ADULT_CONCEPTS), chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """The adult margin and the nearest concept of each row.

    Args:
        x: ``(n, d)`` float32 L2-normalised row vectors.
        concepts: ``(c, d)`` float32 L2-normalised concept vectors, the ``n_adult`` adult
            ones first (see :func:`concept_vectors`).

    Returns:
        ``(margin, concept)``: ``(n,)`` float32 cosine to the nearest adult concept minus
        cosine to the nearest ordinary category, in [-2, 2] (above :data:`BOUNDARY`, an adult
        concept is the row's nearest of all); ``(n,)`` int64 index of the nearest concept.
    """
    margin = np.empty(len(x), dtype=np.float32)
    best = np.empty(len(x), dtype=np.int64)
    for lo in range(0, len(x), chunk):
        cos = x[lo : lo + chunk] @ concepts.T
        margin[lo : lo + chunk] = cos[:, :n_adult].max(axis=1) - cos[:, n_adult:].max(axis=1)
        best[lo : lo + chunk] = cos.argmax(axis=1)
    return margin, best
