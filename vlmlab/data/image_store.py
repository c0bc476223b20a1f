"""The image store: the images of URL-only documents (OBELICS publishes its images as URLs), downloaded once.

A document's image URL is kept as one file named by the URL's hash (`vlmlab.data.adapters.image_file_name`), so a
run finds it without the network and a second prefetch skips what is there. `vlmlab prefetch` fills the store,
as the paper's pipeline downloaded OBELICS's images before training; an image that cannot be fetched (a dead
link) stays missing and its document trains without it, counted as `image_not_fetched` in the run's record.
"""

from __future__ import annotations

import os
import urllib.request
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vlmlab.data.adapters import image_file_name

USER_AGENT = "vlmlab-prefetch (research dataset download; https://github.com/huggingface/OBELICS)"


def fetch_images(urls: Iterable[str], store: str | os.PathLike, timeout: float = 20.0, workers: int = 16) -> Counter:
    """Download every URL not yet in `store`; counts of `present` (there before), `fetched` and `failed`."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    todo = list(dict.fromkeys(urls))
    counts = Counter(present=stored(todo, store))
    wanted = [url for url in todo if not (store / image_file_name(url)).exists()]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for ok in pool.map(lambda url: _fetch(url, store / image_file_name(url), timeout), wanted):
            counts["fetched" if ok else "failed"] += 1
    return counts


def stored(urls: Iterable[str], store: str | os.PathLike) -> int:
    """How many of `urls` the store holds."""
    return sum((Path(store) / image_file_name(url)).exists() for url in urls)


def _fetch(url: str, target: Path, timeout: float) -> bool:
    """One image into `target`, written beside it and renamed into place, so a broken download leaves nothing."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    partial = target.with_name(f".{target.name}.partial")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            partial.write_bytes(response.read())
        partial.replace(target)
        return True
    except (OSError, ValueError):  # HTTP errors, timeouts, refused connections, malformed URLs
        partial.unlink(missing_ok=True)
        return False
