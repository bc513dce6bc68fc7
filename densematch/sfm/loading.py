"""Background image loading: decode the next images in threads while the current ones are matched."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from PIL import Image

from ..io import load_image

T = TypeVar("T")
R = TypeVar("R")


def prefetched(
    items: Iterable[T], load: Callable[[T], R], lookahead: int = 4, threads: int = 2
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, load(item))`` in order while up to ``lookahead`` later items load in background threads.

    An exception raised by ``load`` (e.g. :class:`~densematch.errors.ImageReadError`) surfaces when its
    item is reached. Pending loads are cancelled when the consumer stops early.
    """
    iterator = iter(items)
    pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="densematch-load")
    pending: deque = deque()
    try:
        for item in iterator:
            pending.append((item, pool.submit(load, item)))
            if len(pending) > lookahead:
                break
        while pending:
            item, future = pending.popleft()
            following = next(iterator, _END)
            if following is not _END:
                pending.append((following, pool.submit(load, following)))
            yield item, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_END = object()


class ImageCache:
    """Thread-safe least-recently-used cache of decoded images of one folder, keyed by image name.

    Exhaustive pair lists revisit the same image many times in a row; the cache decodes it once.
    """

    def __init__(self, images_dir, mode: str = "RGB", capacity: int = 16):
        self.images_dir = Path(images_dir)
        self.mode = mode
        self.capacity = max(1, int(capacity))
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> Image.Image:
        with self._lock:
            if name in self._images:
                self._images.move_to_end(name)
                return self._images[name]
        image = load_image(self.images_dir / name, mode=self.mode)
        with self._lock:
            self._images[name] = image
            self._images.move_to_end(name)
            while len(self._images) > self.capacity:
                self._images.popitem(last=False)
        return image

    def pair(self, pair: tuple[str, str]) -> tuple[Image.Image, Image.Image]:
        return self.get(pair[0]), self.get(pair[1])
