"""Model-free image signal: the perceptual hash (pHash) of each image.

pHash (DCT of a 32x32 greyscale thumbnail, top-left 8x8 coefficients compared with their
median; Zauner 2010, as implemented by the ``imagehash`` library) maps a photo and its
re-encoded, resized or lightly edited copies to 64-bit codes a few bits apart. Exact and
near-exact photo reuse across sellers is the most common duplicate in real catalogs.

Codes are stored as ``(n, 8)`` uint8 (64 bits, ``numpy.packbits`` order), the layout FAISS
binary indexes take (:mod:`eclip.index.binary`).
"""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

PHASH_BITS = 64
PHASH_BYTES = PHASH_BITS // 8


def phash_bytes(image: Image.Image) -> np.ndarray:
    """The 64-bit pHash of ``image`` as ``(8,)`` uint8."""
    bits = imagehash.phash(image, hash_size=8).hash.reshape(-1)
    return np.packbits(bits.astype(np.uint8))


def hamming(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance of two ``(p, 8)`` uint8 code arrays; ``(p,)`` int32 bits."""
    return np.unpackbits(np.bitwise_xor(x, y), axis=1).sum(axis=1).astype(np.int32)
