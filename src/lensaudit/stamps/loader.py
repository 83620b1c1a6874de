"""Shard-aware reading of a stamp store, the way training reads it.

An epoch visits the store shard by shard: the order of the shards is shuffled, a *window* of
``buffer_shards`` shards is read at once (each shard's requested rows in contiguous runs, through
:meth:`~lensaudit.stamps.store.StampStore.read_images`), and the rows within the window are shuffled. Memory
holds one window of raw images, whatever the size of the store; disk reads are whole shards or long
contiguous slices instead of one chunk per stamp. The order depends only on (the rows, the shard size, the
rng): not on the worker count. With ``workers`` > 1 (a torch ``DataLoader`` over :class:`WindowDataset`),
worker ``w`` reads the windows ``w, w+W, …``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def shard_windows(
    rows: np.ndarray, shard_size: int, rng: np.random.Generator | None, buffer_shards: int
) -> list[np.ndarray]:
    """Positions into ``rows`` grouped into windows of ``buffer_shards`` store shards.

    With ``rng`` the shard order and the order within each window are shuffled; without it (evaluation)
    shards come in store order and positions in row order. Every position appears exactly once.

    >>> w = shard_windows(np.array([9, 0, 5, 1, 8, 4]), 4, None, 1)
    >>> [x.tolist() for x in w]
    [[1, 3], [5, 2], [4, 0]]
    >>> sorted(np.concatenate(shard_windows(np.arange(20), 4, np.random.default_rng(0), 2)).tolist()) == list(
    ...     range(20))
    True
    """
    rows = np.asarray(rows, np.int64)
    shard = rows // shard_size
    uniq = np.unique(shard)
    if rng is not None:
        uniq = rng.permutation(uniq)
    rank = np.empty(int(uniq.max()) + 1 if len(uniq) else 0, np.int64)
    rank[uniq] = np.arange(len(uniq))
    win = rank[shard] // max(1, buffer_shards) if len(rows) else np.zeros(0, np.int64)
    by_row = np.lexsort((rows, win))  # window, then row
    bounds = np.searchsorted(win[by_row], np.arange(int(win.max()) + 2 if len(win) else 1))
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        pos = by_row[a:b]
        out.append(rng.permutation(pos) if rng is not None else pos)
    return out


def _window_images(
    store: Any, rows: np.ndarray, windows: list[np.ndarray], threads: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions, images) per window, in order; with ``threads`` > 0 the next ``threads`` windows are read
    ahead by that many reader threads (the reads release the GIL), so reading overlaps the consumer."""
    if threads <= 0:
        for pos in windows:
            yield pos, store.read_images(rows[pos])
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as ex:
        todo = iter(windows)
        inflight: deque = deque()
        for pos in todo:
            inflight.append((pos, ex.submit(store.read_images, rows[pos])))
            if len(inflight) > threads:
                p, fut = inflight.popleft()
                yield p, fut.result()
        while inflight:
            p, fut = inflight.popleft()
            yield p, fut.result()


def iter_batches(
    store: Any, rows: np.ndarray, windows: list[np.ndarray], batch_size: int, threads: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions, raw images) batches of ``batch_size`` following ``windows`` (from
    :func:`shard_windows`): each window is read in one :meth:`read_images` call (``threads`` reader threads
    read windows ahead; the batches are the same); a batch may span two windows. Images are (k, B, S, S)
    float32 in nanomaggies, in the order of ``positions``."""
    tail_pos, tail_img = np.zeros(0, np.int64), None
    for pos, img in _window_images(store, rows, windows, threads):
        a = 0
        if tail_img is not None:  # complete the batch begun in the previous window
            a = batch_size - len(tail_pos)
            pos_a, img_a = np.concatenate([tail_pos, pos[:a]]), np.concatenate([tail_img, img[:a]])
            if len(pos_a) < batch_size:
                tail_pos, tail_img = pos_a, img_a
                continue
            yield pos_a, img_a
            tail_pos, tail_img = np.zeros(0, np.int64), None
        while a + batch_size <= len(pos):
            yield pos[a : a + batch_size], img[a : a + batch_size]
            a += batch_size
        if a < len(pos):
            tail_pos, tail_img = pos[a:], img[a:]
    if tail_img is not None and len(tail_pos):
        yield tail_pos, tail_img


class WindowDataset:
    """A torch ``IterableDataset``-compatible view of :func:`iter_batches` for a ``DataLoader`` with
    ``batch_size=None``: worker ``w`` of ``W`` reads the windows ``w::W`` (the store is opened in each
    worker), batch by batch straight into tensors in shared memory. Yields (positions, image tensor)
    batches; batches do not span windows."""

    def __init__(self, path: str, rows: np.ndarray, windows: list[np.ndarray], batch_size: int):
        self.path, self.rows, self.windows, self.batch_size = str(path), np.asarray(rows), windows, batch_size

    def __iter__(self) -> Iterator[tuple[np.ndarray, Any]]:
        import torch

        from lensaudit.stamps.store import StampStore

        info = torch.utils.data.get_worker_info()
        w, nw = (0, 1) if info is None else (info.id, info.num_workers)
        store = StampStore.open(self.path)
        for pos in self.windows[w::nw]:
            for a in range(0, len(pos), self.batch_size):
                p = pos[a : a + self.batch_size]
                # read straight into shared memory: the DataLoader passes the handle on without a copy
                t = torch.empty((len(p),) + tuple(store.group["image"].shape[1:])).share_memory_()
                store.read_images(self.rows[p], out=t.numpy())
                yield p, t


def make_iterable(ds: WindowDataset):
    """``ds`` as a ``torch.utils.data.IterableDataset`` (torch imported only here)."""
    import torch

    class _It(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(ds)

    return _It()
