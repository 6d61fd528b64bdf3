"""Catalog images: local files under the catalog's root, or http(s) URLs fetched into a cache.

Every failure is an :class:`ImageFailure` with a short machine-readable ``reason`` (``missing``,
``outside_root``, ``corrupt``, ``timeout``, ``unavailable``, ``http_error``, ``too_large``,
``private_url``, ``no_image``) and a human-readable detail; ``timeout`` and ``unavailable``
may pass on their own (:data:`RETRYABLE`). Callers record failures (``failures.parquet``) and fall back to text;
one bad image never stops a run.

Security (developers' guide): a path that resolves outside the catalog's root (``..``, an
absolute path, a symlink pointing out) is refused unless ``allow_outside_root`` is set, and
downloads are bounded in bytes and seconds.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from eclip.rundir import atomic_path

#: Defaults for URL images.
MAX_IMAGE_BYTES = 20 * 2**20
URL_TIMEOUT_S = 10.0
#: Pillow's decompression-bomb guard, set explicitly (pixels).
MAX_IMAGE_PIXELS = 89_478_485
#: eclip's own bound, well below Pillow's: a product photo has far fewer pixels, and an image
#: of 40 million takes about 120 MB decoded (``--max-image-pixels``).
DEFAULT_MAX_PIXELS = 40_000_000

#: Retries of a download that timed out, was refused, or got HTTP 429 / 5xx, with
#: exponential backoff (``urllib3.util.Retry``: 0.5 s, 1 s, 2 s ...; a ``Retry-After``
#: header is honoured).
URL_RETRIES = 2
URL_BACKOFF_S = 0.5
#: Failure reasons that may pass on their own: a shard holding one is not finished, so a
#: rerun of ``eclip embed`` tries those images again.
RETRYABLE = frozenset({"timeout", "unavailable"})


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
        timeout_s: connect and read timeout per try, seconds.
        retries: retries after a timeout, a refused connection or HTTP 429 / 5xx.
        backoff_s: the first retry's wait, seconds (doubling after each).
        allow_private_urls: fetch URLs whose host is a loopback, private or link-local
            address (refused by default, see :func:`check_public`).
        max_pixels: an image with more pixels is refused as ``too_large`` before it is
            decoded.
    """

    root: Path
    cache_dir: Path
    allow_outside_root: bool = False
    max_bytes: int = MAX_IMAGE_BYTES
    timeout_s: float = URL_TIMEOUT_S
    retries: int = URL_RETRIES
    backoff_s: float = URL_BACKOFF_S
    allow_private_urls: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS


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
        raise ImageFailure(
            "outside_root",
            f"{ref} resolves to {path}, outside the catalog root {root} (pass --allow-outside-root to follow it)",
        )
    if not path.is_file():
        raise ImageFailure("missing", f"no file {path}")
    return path


def _pool() -> Any:
    import urllib3

    global _POOL
    if _POOL is None:
        _POOL = urllib3.PoolManager(num_pools=64, maxsize=8)
    return _POOL


_POOL: Any = None


#: Redirects followed per download (each hop is checked like the first URL).
MAX_REDIRECTS = 5


def check_public(url: str, settings: ImageSettings) -> None:
    """Refuse a URL whose host resolves to a loopback, private, link-local, multicast or
    reserved address (Python's ``ipaddress`` classes), unless ``settings.allow_private_urls``:
    a catalog must not make eclip fetch from the machine's own network (OWASP, Server-Side
    Request Forgery Prevention Cheat Sheet).

    Raises:
        ImageFailure: ``private_url``; ``http_error`` when the URL has no host;
            ``unavailable`` when the host does not resolve (DNS may come back).
    """
    if settings.allow_private_urls:
        return
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname
    if not host:
        raise ImageFailure("http_error", f"{url}: no host in the URL")
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise ImageFailure("unavailable", f"{url}: host {host} does not resolve ({exc})") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if (
            ip.is_loopback
            or ip.is_private
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
        ):
            raise ImageFailure(
                "private_url",
                f"{url}: {host} is {ip}, a local or private address; pass --allow-private-urls to fetch from it",
            )


def _get_public(url: str, settings: ImageSettings, retry: Any, timeout: Any) -> Any:
    """GET ``url``, following at most :data:`MAX_REDIRECTS` redirects, each hop checked by
    :func:`check_public` (a public URL must not redirect into the local network)."""
    from urllib.parse import urljoin

    for _ in range(MAX_REDIRECTS + 1):
        check_public(url, settings)
        resp = _pool().request("GET", url, retries=retry, timeout=timeout, preload_content=False, redirect=False)
        location = resp.headers.get("Location")
        if resp.status in (301, 302, 303, 307, 308) and location:
            resp.release_conn()
            url = urljoin(url, location)
            continue
        return resp
    raise ImageFailure("http_error", f"{url}: more than {MAX_REDIRECTS} redirects")


def fetch_url(url: str, settings: ImageSettings) -> Path:
    """Download ``url`` into the cache (once) and return the cached file.

    The download is retried ``settings.retries`` times with exponential backoff after a
    timeout, a refused connection or HTTP 429 / 5xx (``urllib3.util.Retry``); it is refused
    past ``settings.max_bytes`` and abandoned after ``settings.timeout_s`` without data per
    try. The cache file is written atomically.

    Raises:
        ImageFailure: ``timeout`` or ``unavailable`` (429, 5xx, no connection: may pass, see
            :data:`RETRYABLE`), ``http_error`` (any other HTTP error), ``too_large``, or
            ``private_url`` (:func:`check_public`).
    """
    import urllib3
    from urllib3.exceptions import (
        HTTPError,
        MaxRetryError,
        NewConnectionError,
        ProtocolError,
    )
    from urllib3.exceptions import (
        TimeoutError as Urllib3Timeout,
    )

    target = settings.cache_dir / hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
    if target.is_file():
        return target
    retry = urllib3.Retry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        backoff_factor=settings.backoff_s,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    timeout = urllib3.Timeout(connect=settings.timeout_s, read=settings.timeout_s)
    try:
        resp = _get_public(url, settings, retry, timeout)
        try:
            if resp.status == 429 or resp.status >= 500:
                raise ImageFailure("unavailable", f"{url} answered HTTP {resp.status} after {settings.retries} retries")
            if resp.status >= 400:
                raise ImageFailure("http_error", f"{url} answered HTTP {resp.status}")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > settings.max_bytes:
                raise ImageFailure(
                    "too_large", f"{url} declares {int(declared):,} bytes; the limit is {settings.max_bytes:,}"
                )
            data = resp.read(settings.max_bytes + 1)
        finally:
            resp.release_conn()
    except ImageFailure:
        raise
    except MaxRetryError as exc:
        if isinstance(exc.reason, NewConnectionError):  # before timeouts: urllib3 derives it from ConnectTimeoutError
            raise ImageFailure(
                "unavailable", f"{url}: no connection after {settings.retries} retries ({exc.reason})"
            ) from None
        if isinstance(exc.reason, Urllib3Timeout):
            raise ImageFailure(
                "timeout", f"{url} did not answer within {settings.timeout_s:g} s ({settings.retries} retries)"
            ) from None
        raise ImageFailure("unavailable", f"{url}: {exc.reason}") from None
    except Urllib3Timeout:
        raise ImageFailure("timeout", f"{url} sent nothing for {settings.timeout_s:g} s") from None
    except (ProtocolError, HTTPError, OSError) as exc:
        raise ImageFailure("unavailable", f"{url}: {exc}") from None
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
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it; eclip's own limit below says too_large
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            width, height = im.size  # read from the header: nothing is decoded yet
            if width * height > settings.max_pixels:
                raise ImageFailure(
                    "too_large",
                    f"{ref}: {width} x {height} = {width * height:,} pixels; the limit is {settings.max_pixels:,} (--max-image-pixels)",
                )
            im.load()
            return im.convert("RGB")
    except ImageFailure:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageFailure("too_large", f"{ref}: {exc}") from None
    except UnidentifiedImageError:
        raise ImageFailure("corrupt", f"{ref}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageFailure("corrupt", f"{ref}: {exc}") from None
