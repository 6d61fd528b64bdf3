"""Encoders: turn catalog texts into vectors (dense sentence embeddings, sparse TF-IDF)."""

from eclip.encoders.base import TextEncoder
from eclip.encoders.cache import embed_cached
from eclip.encoders.factory import DEFAULT_TEXT_MODEL, load_text_encoder
from eclip.encoders.lexical import CharNgramTfidf, extract_codes

__all__ = [
    "DEFAULT_TEXT_MODEL",
    "CharNgramTfidf",
    "TextEncoder",
    "embed_cached",
    "extract_codes",
    "load_text_encoder",
]
