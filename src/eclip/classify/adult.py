"""Adult-content filter: zero-shot score of "adult or sexual-wellness product" per row.

The score is the softmax probability mass on the adult concepts when each row is classified
zero-shot (prompt ensembling, :mod:`eclip.classify.zeroshot`) among two built-in concept
sets:

* **adult** (:data:`ADULT_CONCEPTS`): the Mature > Erotic branch of Google's product
  taxonomy (``taxonomy.en-US.txt``: Erotic, Erotic Books, Erotic Clothing, Erotic DVDs &
  Videos, Erotic Food & Edibles, Erotic Games, Erotic Magazines, Pole Dancing Kits, Sex
  Toys), the two sexual-health leaves of its Health & Beauty branch (Health Care > Condoms,
  Personal Care > Personal Lubricants), and the sub-categories that pharmacy and marketplace
  shops list under "Sexual Wellness" (condoms, lubricants and massage gels, massagers and
  vibrators, sexual health and stamina supplements, delay sprays);
* **general** (:data:`GENERAL_CONCEPTS`): every other top-level category of Google's
  taxonomy, plus the children of Health & Beauty > Health Care and Personal Care, so that
  ordinary pharmacy and beauty products have somewhere closer to go than "adult".

Google's Mature branch also holds Weapons; it is left out, as it is not adult content in the
sense of this filter.

A row is flagged when its score reaches the threshold: :data:`DEFAULT_THRESHOLD`, or one
calibrated on labelled rows for a target precision (README, "Classification and the adult
filter", gives the precision and recall it measured).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from eclip.classify.probe import LinearProbe
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

GENERAL_CONCEPTS: tuple[str, ...] = (
    # Google product taxonomy, top level (Mature excepted)
    "Animals & Pet Supplies",
    "Apparel & Accessories",
    "Arts & Entertainment",
    "Baby & Toddler",
    "Business & Industrial",
    "Cameras & Optics",
    "Electronics",
    "Food, Beverages & Tobacco",
    "Furniture",
    "Hardware",
    "Health & Beauty",
    "Home & Garden",
    "Luggage & Bags",
    "Media",
    "Office Supplies",
    "Religious & Ceremonial",
    "Software",
    "Sporting Goods",
    "Toys & Games",
    "Vehicles & Parts",
    # Health & Beauty > Health Care
    "Biometric Monitors",
    "First Aid",
    "Fitness & Nutrition",
    "Vitamins & Supplements",
    "Hearing Aids",
    "Incontinence Aids",
    "Medical Tests",
    "Medicine & Drugs",
    "Mobility & Accessibility",
    "Respiratory Care",
    "Supports & Braces",
    # Health & Beauty > Personal Care
    "Cosmetics",
    "Deodorant & Anti-Perspirant",
    "Ear Care",
    "Feminine Sanitary Supplies",
    "Foot Care",
    "Hair Care",
    "Massage & Relaxation",
    "Oral Care",
    "Shaving & Grooming",
    "Skin Care",
    "Vision Care",
)

#: Flag threshold on the adult score when none is calibrated (README gives its measured
#: precision and recall).
DEFAULT_THRESHOLD = 0.5
#: Softmax sharpness of the filter's zero-shot score. Lower than CLIP's 100 (which saturates
#: MiniLM's cosine gaps into scores of exactly 1.0): 10 was the best of 10, 30 and 100 for
#: recall at precision 0.9 on the calibration half of the dev set (README).
LOGIT_SCALE = 10.0


def concept_vectors(encode: Callable[[list[str]], np.ndarray], templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
    """``(len(ADULT_CONCEPTS) + len(GENERAL_CONCEPTS), d)`` float32 L2-normalised concept
    vectors, adult concepts first (see :func:`eclip.classify.zeroshot.label_vectors`)."""
    return label_vectors(encode, list(ADULT_CONCEPTS) + list(GENERAL_CONCEPTS), templates)


def adult_scores(x: np.ndarray, concepts: np.ndarray, n_adult: int = len(ADULT_CONCEPTS), logit_scale: float = LOGIT_SCALE, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adult score, its log-odds and the nearest concept of each row.

    Args:
        x: ``(n, d)`` float32 L2-normalised row vectors.
        concepts: ``(c, d)`` float32 L2-normalised concept vectors, the ``n_adult`` adult
            ones first (see :func:`concept_vectors`).
        logit_scale: multiplies cosines before the softmax over all concepts.

    Returns:
        ``(score, log_odds, concept)``: ``(n,)`` float32 probability mass on the adult
        concepts, in [0, 1]; ``(n,)`` float32 ``log(p_adult / p_general)`` (the same ranking,
        without float32 saturation near 1); ``(n,)`` int64 index of the most similar concept.
    """
    from scipy.special import logsumexp

    score = np.empty(len(x), dtype=np.float32)
    log_odds = np.empty(len(x), dtype=np.float32)
    best = np.empty(len(x), dtype=np.int64)
    for lo in range(0, len(x), chunk):
        cos = x[lo : lo + chunk] @ concepts.T
        z = logit_scale * cos.astype(np.float64)
        lo_ = logsumexp(z[:, :n_adult], axis=1) - logsumexp(z[:, n_adult:], axis=1)
        log_odds[lo : lo + chunk] = lo_
        score[lo : lo + chunk] = 1.0 / (1.0 + np.exp(-lo_))
        best[lo : lo + chunk] = cos.argmax(axis=1)
    return score, log_odds, best


def adult_probability(probe: LinearProbe, features: np.ndarray) -> np.ndarray:
    """``(n,)`` float32 probability of the ``adult`` class under an adult probe (fitted by
    ``eclip filter-adult --fit-probe`` on ``(n, d + 1)`` float32 features: the vectors plus
    the zero-shot log-odds)."""
    return probe.proba(features)[:, probe.classes.index("adult")]
