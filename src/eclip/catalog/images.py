"""Catalog images: local files under the catalog's root, or http(s) URLs fetched into a cache.

Every failure is an :class:`ImageFailure` with a short machine-readable ``reason`` (``missing``,
``outside_root``, ``corrupt``, ``timeout``, ``http_error``, ``too_large``, ``no_image``) and a
human-readable detail. Callers record failures (``failures.parquet``) and fall back to text;
one bad image never stops a run.

Security (developers' guide): a path that resolves outside the catalog's root (``..``, an
absolute path, a symlink pointing out) is refused unless ``allow_outside_root`` is set, and
downloads are bounded in bytes and seconds.
"""

from __future__ import annotations

import hashlib
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from eclip.rundir import atomic_path

#: Defaults for URL images.
MAX_IMAGE_BYTES = 20 * 2**20
URL_TIMEOUT_S = 10.0
#: Pillow's decompression-bomb guard, set explicitly (pixels).
MAX_IMAGE_PIXELS = 89_478_485


class ImageFailure(Exception):
    """An image that could not be used. ``reason`` is one word; ``str(exc)`` the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class ImageSettings:
    """Where and how images are read.

    Attributes:
        root: folder that relative paths resolve against (the catalog file's folder), and the
            folder no path may leave unless ``allow_outside_root``.
        cache_dir: where URL images are stored, one file per URL (SHA-256 of the URL).
        allow_outside_root: follow paths that leave ``root``.
        max_bytes: largest download accepted, bytes.
        timeout_s: connect and read timeout per download, seconds.
    """

    root: Path
    cache_dir: Path
    allow_outside_root: bool = False
    max_bytes: int = MAX_IMAGE_BYTES
    timeout_s: float = URL_TIMEOUT_S


def is_url(ref: str) -> bool:
    """True for ``http://`` and ``https://`` references."""
    return ref.startswith(("http://", "https://"))


def resolve_local(ref: str, settings: ImageSettings) -> Path:
    """The file a local reference points to.

    Raises:
        ImageFailure: ``outside_root`` when it leaves the root (and that is not allowed),
            ``missing`` when no file is there.
    """
    root = settings.root.resolve()
    path = (root / Path(ref).expanduser()).resolve()
    if not settings.allow_outside_root and not path.is_relative_to(root):
        raise ImageFailure("outside_root", f"{ref} resolves to {path}, outside the catalog root {root} (pass --allow-outside-root to follow it)")
    if not path.is_file():
        raise ImageFailure("missing", f"no file {path}")
    return path


def fetch_url(url: str, settings: ImageSettings) -> Path:
    """Download ``url`` into the cache (once) and return the cached file.

    The download is refused past ``settings.max_bytes`` and abandoned after
    ``settings.timeout_s`` without data. The cache file is written atomically.

    Raises:
        ImageFailure: ``timeout``, ``http_error`` or ``too_large``.
    """
    target = settings.cache_dir / hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
    if target.is_file():
        return target
    try:
        with urllib.request.urlopen(url, timeout=settings.timeout_s) as resp:  # noqa: S310 - http(s) only, checked by is_url
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > settings.max_bytes:
                raise ImageFailure("too_large", f"{url} declares {int(declared):,} bytes; the limit is {settings.max_bytes:,}")
            data = resp.read(settings.max_bytes + 1)
    except ImageFailure:
        raise
    except urllib.error.HTTPError as exc:
        raise ImageFailure("http_error", f"{url} answered HTTP {exc.code}") from None
    except (TimeoutError, socket.timeout) as exc:
        raise ImageFailure("timeout", f"{url} sent nothing for {settings.timeout_s:g} s ({exc})") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise ImageFailure("timeout", f"{url} did not answer within {settings.timeout_s:g} s") from None
        raise ImageFailure("http_error", f"{url}: {exc.reason}") from None
    except OSError as exc:
        raise ImageFailure("http_error", f"{url}: {exc}") from None
    if len(data) > settings.max_bytes:
        raise ImageFailure("too_large", f"{url} is larger than {settings.max_bytes:,} bytes")
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target


def open_image(ref: str | None, settings: ImageSettings) -> Image.Image:
    """Read one catalog image as an RGB PIL image, fully decoded.

    Args:
        ref: a path relative to ``settings.root`` (or absolute), or an http(s) URL.

    Raises:
        ImageFailure: any reason listed in this module's docstring.
    """
    if ref is None or not str(ref).strip():
        raise ImageFailure("no_image", "the image column is empty in this row")
    ref = str(ref).strip()
    path = fetch_url(ref, settings) if is_url(ref) else resolve_local(ref, settings)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ImageFailure("too_large", f"{ref}: {exc}") from None
    except UnidentifiedImageError:
        raise ImageFailure("corrupt", f"{ref}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageFailure("corrupt", f"{ref}: {exc}") from None
