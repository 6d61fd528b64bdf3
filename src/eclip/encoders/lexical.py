"""Lexical encoders: TF-IDF over character n-grams, and model-code extraction.

Product titles carry lexical signals that sentence embeddings blur: model numbers such as
``PSLX350H`` or ``WH-1000XM3`` decide many matches, and two titles that differ only in such a
code (``KDL-40V`` vs ``KDL-46V``) are different products.
"""

from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

_TOKEN = re.compile(r"[0-9a-z]+(?:[-/.][0-9a-z]+)*")
_SEP = re.compile(r"[-/.]")
_DIGIT = re.compile(r"\d")
_ALPHA = re.compile(r"[a-z]")


class CharNgramTfidf:
    """TF-IDF over word-bounded character n-grams (scikit-learn ``analyzer="char_wb"``).

    Fitted on the catalog itself, so the IDF weights reflect which n-grams are rare in *this*
    catalog. See scikit-learn's ``TfidfVectorizer`` documentation.

    Args:
        ngram_range: smallest and largest n-gram length, in characters.
    """

    def __init__(self, ngram_range: tuple[int, int] = (3, 5)) -> None:
        self.ngram_range = ngram_range
        self._vec = TfidfVectorizer(
            analyzer="char_wb", ngram_range=ngram_range, lowercase=True, sublinear_tf=True, dtype=np.float32
        )

    def fit_transform(self, texts: list[str]) -> sp.csr_matrix:
        """Fit on ``texts`` and return ``(n, vocab)`` float32 CSR, rows L2-normalised.

        A text with no n-grams (empty) gets an all-zero row.
        """
        if not any(texts):
            return sp.csr_matrix((len(texts), 1), dtype=np.float32)
        return self._vec.fit_transform(texts).tocsr()

    def describe(self) -> dict:
        return {"kind": "tfidf-char_wb", "ngram_range": list(self.ngram_range), "sublinear_tf": True}


def extract_codes(text: str, min_len: int = 4) -> frozenset[str]:
    """Model-code tokens of ``text``: lower-cased, with ``-``, ``/`` and ``.`` removed.

    A token counts as a code when, after removing separators, it has at least ``min_len``
    characters and mixes letters and digits (``PS-LX350H`` -> ``pslx350h``), or is a run of at
    least ``min_len + 2`` digits (part numbers, EANs). Sizes such as ``128gb`` or ``70cl`` also
    qualify; they are weak on their own but still separate variants.
    """
    out = set()
    for tok in _TOKEN.findall(text.lower()):
        norm = _SEP.sub("", tok)
        if len(norm) < min_len:
            continue
        has_digit = _DIGIT.search(norm) is not None
        if has_digit and _ALPHA.search(norm) is not None:
            out.add(norm)
        elif has_digit and norm.isdigit() and len(norm) >= min_len + 2:
            out.add(norm)
    return frozenset(out)
