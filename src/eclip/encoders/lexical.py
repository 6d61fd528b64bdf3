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


def _grown(array: np.ndarray, used: int, size: int) -> np.ndarray:
    """A ``size``-long array of ``array``'s dtype holding its first ``used`` entries."""
    out = np.empty(size, array.dtype)
    out[:used] = array[:used]
    return out


def _tfidf_in_place(counts: sp.csr_matrix, step: int = 1 << 24) -> sp.csr_matrix:
    """The weighting ``TfidfVectorizer(sublinear_tf=True)`` applies, on ``counts`` in place:
    ``tf = 1 + log(count)``, smoothed ``idf = 1 + log((1 + n) / (1 + df))``, rows L2-normalised
    (scikit-learn's ``TfidfTransformer`` documentation). ``counts``: ``(n, v)`` float32 CSR with
    canonical indices (no repeats), as ``HashingVectorizer`` gives."""
    from sklearn.preprocessing import normalize

    data = counts.data
    np.log(data, out=data)
    data += 1
    df = np.zeros(counts.shape[1], np.int64)
    for s in range(0, len(data), step):  # bincount casts its input to int64: a step at a time
        df += np.bincount(counts.indices[s : s + step], minlength=counts.shape[1])
    idf = (np.log((1 + counts.shape[0]) / (1 + df)) + 1).astype(np.float32)
    for s in range(0, len(data), step):
        data[s : s + step] *= idf[counts.indices[s : s + step]]
    return normalize(counts, norm="l2", copy=False)


class CharNgramTfidf:
    """TF-IDF over word-bounded character n-grams (scikit-learn ``analyzer="char_wb"``).

    Fitted on the catalog itself, so the IDF weights reflect which n-grams are rare in *this*
    catalog. See scikit-learn's ``TfidfVectorizer`` documentation.

    Up to ``exact_max`` rows, the vocabulary is exact (``TfidfVectorizer``). Above it, a
    vocabulary of millions of n-grams would not fit in bounded memory, so n-grams are hashed
    into ``2**hash_bits`` columns (``HashingVectorizer``, the "hashing trick" of Weinberger et
    al., ICML 2009) chunk by chunk, and the same sublinear TF, smoothed IDF and L2
    normalisation are applied over all rows: memory is the output matrix plus one chunk.

    Args:
        ngram_range: smallest and largest n-gram length, in characters.
        exact_max: largest catalog given an exact vocabulary.
        hash_bits: log2 of the hashed width above it.
        chunk_rows: rows hashed at a time.
    """

    def __init__(
        self,
        ngram_range: tuple[int, int] = (3, 5),
        exact_max: int = 200_000,
        hash_bits: int = 22,
        chunk_rows: int = 10_000,
    ) -> None:
        self.ngram_range = ngram_range
        self.exact_max = exact_max
        self.hash_bits = hash_bits
        self.chunk_rows = chunk_rows
        self.hashed = False
        self._vec = TfidfVectorizer(
            analyzer="char_wb", ngram_range=ngram_range, lowercase=True, sublinear_tf=True, dtype=np.float32
        )

    def fit_transform(self, texts: list[str]) -> sp.csr_matrix:
        """Fit on ``texts`` and return ``(n, vocab)`` float32 CSR, rows L2-normalised
        (``vocab`` = ``2**hash_bits`` above ``exact_max`` rows).

        A text with no n-grams (empty) gets an all-zero row.
        """
        if not any(texts):
            return sp.csr_matrix((len(texts), 1), dtype=np.float32)
        if len(texts) <= self.exact_max:
            return self._vec.fit_transform(texts).tocsr()
        return self._hashed(texts)

    def _hashed(self, texts: list[str]) -> sp.csr_matrix:
        from sklearn.feature_extraction.text import HashingVectorizer

        from eclip.progress import progress_bar

        self.hashed = True
        hv = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=self.ngram_range,
            lowercase=True,
            alternate_sign=False,
            norm=None,
            n_features=2**self.hash_bits,
            dtype=np.float32,
        )
        # written straight into one pair of arrays, sized from the first chunk and grown if need
        # be: the matrix is held once, not as chunks plus their concatenation (scipy's vstack
        # and TfidfTransformer's copies held it three times); pages never written cost nothing
        indices, values = np.empty(0, np.int32), np.empty(0, np.float32)
        indptr = [np.zeros(1, np.int64)]
        nnz = 0
        with progress_bar("TF-IDF (hashed n-grams)", total=len(texts)) as (bar, task):
            for s in range(0, len(texts), self.chunk_rows):
                part = hv.transform(texts[s : s + self.chunk_rows])
                if nnz + part.nnz > len(indices):
                    per_row = (nnz + part.nnz) / (s + part.shape[0])
                    cap = int(per_row * len(texts) * 1.1) + part.nnz
                    indices, values = _grown(indices, nnz, cap), _grown(values, nnz, cap)
                indices[nnz : nnz + part.nnz] = part.indices
                values[nnz : nnz + part.nnz] = part.data
                indptr.append(part.indptr[1:].astype(np.int64) + nnz)
                nnz += part.nnz
                bar.advance(task, part.shape[0])
        counts = sp.csr_matrix(
            (values[:nnz], indices[:nnz], np.concatenate(indptr)), shape=(len(texts), 2**self.hash_bits)
        )
        return _tfidf_in_place(counts)

    def describe(self) -> dict:
        return {
            "kind": "tfidf-char_wb",
            "ngram_range": list(self.ngram_range),
            "sublinear_tf": True,
            "hashed_bits": self.hash_bits if self.hashed else None,
        }


#: Units of the numeric attributes in titles: unit -> (dimension, factor to the dimension's
#: base unit). Storage counts decimal, as shops do (1 TB = 1000 GB).
UNITS: dict[str, tuple[str, float]] = {
    **{u: ("storage_gb", f) for u, f in (("kb", 1e-6), ("mb", 1e-3), ("gb", 1.0), ("tb", 1e3), ("gig", 1.0))},
    **{
        u: ("length_mm", f)
        for u, f in (
            ("mm", 1.0),
            ("cm", 10.0),
            ("m", 1000.0),
            ("inch", 25.4),
            ("in", 25.4),
            ('"', 25.4),
            ("'", 25.4),
            ("ft", 304.8),
        )
    },
    **{
        u: ("mass_g", f)
        for u, f in (
            ("mg", 1e-3),
            ("g", 1.0),
            ("gr", 1.0),
            ("kg", 1000.0),
            ("lb", 453.6),
            ("lbs", 453.6),
            ("oz", 28.35),
            ("gm", 1.0),
            ("gms", 1.0),
        )
    },
    **{
        u: ("volume_ml", f)
        for u, f in (("ml", 1.0), ("cl", 10.0), ("l", 1000.0), ("ltr", 1000.0), ("litre", 1000.0), ("liter", 1000.0))
    },
    **{u: ("power_w", f) for u, f in (("w", 1.0), ("watt", 1.0), ("watts", 1.0), ("kw", 1000.0))},
    **{u: ("charge_mah", 1.0) for u in ("mah",)},
    **{u: ("voltage_v", 1.0) for u in ("v", "volt", "volts")},
    **{u: ("frequency_hz", f) for u, f in (("hz", 1.0), ("khz", 1e3), ("mhz", 1e6), ("ghz", 1e9))},
    **{u: ("speed_rpm", 1.0) for u in ("rpm",)},
    **{u: ("rate_mbps", f) for u, f in (("mbps", 1.0), ("gbps", 1000.0))},
    **{u: ("pixels_mp", 1.0) for u in ("mp", "megapixel", "megapixels")},
    **{u: ("resolution_p", 1.0) for u in ("p",)},
    **{
        u: ("count", 1.0)
        for u in (
            "pack",
            "pk",
            "pcs",
            "pc",
            "pieces",
            "piece",
            "count",
            "ct",
            "tabs",
            "tablets",
            "capsules",
            "capsule",
            "caps",
            "tablet",
            "sheets",
            "rolls",
        )
    },
    **{u: ("mass_g", 1.0) for u in ("grams",)},
}
_QUANTITY = re.compile(
    r"(?<![a-wyz0-9.])(\d+(?:[.,]\d+)?)\s?-?\s?("
    + "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
    + r")(?![a-z0-9])"
)


def extract_codes(text: str, min_len: int = 4) -> frozenset[str]:
    """Model-code tokens of ``text``: lower-cased, with ``-``, ``/`` and ``.`` removed.

    A token counts as a code when, after removing separators, it has at least ``min_len``
    characters and mixes letters and digits (``PS-LX350H`` -> ``pslx350h``), or is a run of at
    least ``min_len + 2`` digits (part numbers, EANs). Quantities such as ``128gb`` or
    ``1080p`` are not codes: :func:`extract_quantities` reads them.
    """
    out = set()
    for tok in _TOKEN.findall(text.lower()):
        norm = _SEP.sub("", tok)
        if len(norm) < min_len or _QUANTITY.fullmatch(tok):
            continue  # too short, or a quantity (128gb, 1080p): extract_quantities reads those
        has_digit = _DIGIT.search(norm) is not None
        if has_digit and _ALPHA.search(norm) is not None:
            out.add(norm)
        elif has_digit and norm.isdigit() and len(norm) >= min_len + 2:
            out.add(norm)
    return frozenset(out)


#: A short model token standing alone: 2 or 3 letters and digits, mixing both (``EOS 70D``,
#: ``Rebel T6``, ``Alpha A7``, ``Core i5``), minus ordinals and multipliers (``2nd``, ``4x``).
_MODEL_TOKEN = re.compile(r"(?<![\w/.-])((?=[a-z]*\d)(?=\d*[a-z])[a-z0-9]{2,3})(?![\w/-]|\.\d)")
_NOT_MODEL = re.compile(r"\d+(?:st|nd|rd|th|x|k)|x\d+")

#: Colour words in the languages of the dev catalogs (English, Spanish, French, German,
#: Italian, Dutch, Portuguese, Polish, Czech), each to one English name, so that "Negro" and
#: "Black" agree and "Silver" and "Black" conflict.
COLOURS: dict[str, str] = {
    word: colour
    for colour, words in {
        "black": "black negro negra noir noire schwarz nero nera zwart preto preta czarny czarna černý černá černé",
        "white": "white blanco blanca blanc blanche weiss weiß bianco bianca wit branco branca biały biała bílý bílá bílé",
        "grey": "grey gray gris grau grigio grijs cinza szary szara šedý šedá šedé",
        "silver": "silver plata argent argenté silber argento zilver prata srebrny stříbrný stříbrná",
        "gold": "gold oro dorado doré goud ouro złoty zlatý zlatá",
        "red": "red rojo roja rouge rot rosso rossa rood vermelho czerwony červený červená",
        "blue": "blue azul bleu blau blauw niebieski modrý modrá",
        "green": "green verde vert grün groen zielony zelený zelená",
        "yellow": "yellow amarillo jaune gelb giallo geel amarelo żółty žlutý žlutá",
        "orange": "orange naranja arancione oranje laranja pomarańczowy oranžový oranžová",
        "pink": "pink rosa rose roze różowy růžový růžová",
        "purple": "purple morado violet violett viola paars roxo fioletowy fialový fialová",
        "brown": "brown marrón marron braun marrone bruin marrom brązowy hnědý hnědá",
        # English shades that fashion shops name as colours of their own ("olive oil" or
        # "face cream" on both sides of a pair agree, so food words cost little)
        **{c: c for c in ("navy", "beige", "maroon", "teal", "charcoal", "khaki", "bronze", "turquoise")},
        **{c: c for c in ("lavender", "ivory", "burgundy", "magenta", "cyan", "olive", "cream", "mustard")},
    }.items()
    for word in words.split()
}
_WORD = re.compile(r"[^\W\d_]+")

#: A bare number of 2 to 5 digits standing alone (no unit, not part of a decimal, a code or a
#: longer number): a model or series number (``HP 901``, ``AV 500``, ``GeForce 8400``).
_BARE_NUMBER = re.compile(r"(?<![\w.,:/-])(\d{2,5})(?![\w.,:/%-])")


def extract_quantities(text: str) -> dict[str, frozenset]:
    """Numeric attributes with units in ``text``: dimension -> the values found, in the
    dimension's base unit (:data:`UNITS`), rounded to 3 significant digits. A quote after a
    number reads as inches (``55"``, and ``50'`` as catalogs that escape quotes write it).

    ``"SanDisk Ultra 128GB microSDXC 100MB/s"`` -> ``{"storage_gb": {128.0, 0.1}}``;
    ``"Pack of 2"`` style counts are read from ``2-pack`` / ``2 pcs``. Bare numbers of 2 to 5
    digits that stand alone (``HP 901``, ``NETGEAR AV 500``, ``GeForce 8400 GS``) are the
    dimension ``number``: model and series numbers, which tell near-twins apart (HP 901 vs
    HP 95) as sizes do. Longer digit runs and letter-digit tokens are left to
    :func:`extract_codes`. Two more dimensions hold words, not numbers: ``model``, short
    letter-and-digit model tokens too short to be codes (``EOS 70D`` vs ``6D``, ``T6`` vs
    ``T7i``), and ``colour``, colour words mapped to one English name (:data:`COLOURS`:
    ``Negro`` is ``black``). Their values are strings.
    """
    low = text.lower()
    out: dict[str, set[float]] = {}
    for num, unit in _QUANTITY.findall(low):
        dim, factor = UNITS[unit]
        value = float(num.replace(",", ".")) * factor
        if value > 0:
            out.setdefault(dim, set()).add(float(f"{value:.3g}"))
    rest = _QUANTITY.sub(" ", low)
    for num in _BARE_NUMBER.findall(rest):
        out.setdefault("number", set()).add(float(num))
    sets = {k: frozenset(v) for k, v in out.items()}
    models = frozenset(t for t in _MODEL_TOKEN.findall(rest) if not _NOT_MODEL.fullmatch(t))
    colours = frozenset(COLOURS[w] for w in _WORD.findall(low) if w in COLOURS)
    return {**sets, **({"model": models} if models else {}), **({"colour": colours} if colours else {})}


def codes_of_all(texts: list[str]) -> list[frozenset[str]]:
    """:func:`extract_codes` of every text, one object per distinct set: listings of one
    product share their codes, so a million titles hold about a quarter as many sets (at 1M
    rows, 0.45 GiB of Python objects becomes about 0.12)."""
    seen: dict[frozenset[str], frozenset[str]] = {}
    return [seen.setdefault(c, c) for c in map(extract_codes, texts)]


def quantities_of_all(texts: list[str]) -> list[dict[str, frozenset]]:
    """:func:`extract_quantities` of every text, one dict per distinct value (shared: read,
    never modify, them)."""
    seen: dict[frozenset, dict[str, frozenset]] = {}
    return [seen.setdefault(frozenset(q.items()), q) for q in map(extract_quantities, texts)]
