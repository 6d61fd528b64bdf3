"""Encoders: turn catalog rows into vectors (titles, images, pHash, sparse TF-IDF)."""

from eclip.encoders.base import Encoder, TextEncoder
from eclip.encoders.embed import Dist, EmbedSettings, embed_catalog, embed_shard, shard_bounds
from eclip.encoders.factory import DEFAULT_TEXT_MODEL, load_encoder, load_text_encoder
from eclip.encoders.lexical import CharNgramTfidf, codes_of_all, extract_codes, extract_quantities, quantities_of_all
from eclip.encoders.spec import DEFAULT_MODEL, ModelSpec, parse_model_spec
from eclip.encoders.store import Embeddings, load_embeddings

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TEXT_MODEL",
    "CharNgramTfidf",
    "Dist",
    "EmbedSettings",
    "Embeddings",
    "Encoder",
    "ModelSpec",
    "TextEncoder",
    "embed_catalog",
    "embed_shard",
    "shard_bounds",
    "codes_of_all",
    "extract_codes",
    "extract_quantities",
    "quantities_of_all",
    "load_embeddings",
    "load_encoder",
    "load_text_encoder",
    "parse_model_spec",
]
