"""Shard-aware reading of a stamp store, the way training reads it.

An epoch visits the store shard by shard: the order of the shards is shuffled, a *window* of
``buffer_shards`` shards is read at once (each shard's requested rows in contiguous runs, through
:meth:`~lensaudit.stamps.store.StampStore.read_images`), and the rows within the window are shuffled. Memory
holds one window of raw images, whatever the size of the store; disk reads are whole shards or long
contiguous slices instead of one chunk per stamp. The order depends only on (the rows, the shard size, the
rng): not on the worker count. With ``workers`` > 1 (a torch ``DataLoader`` over :class:`WindowDataset`),
worker ``w`` reads the windows ``w, w+W, …`` (:class:`WorkerBatches`).
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
    store: Any, rows: np.ndarray, windows: list[np.ndarray], threads: int, reuse: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions, images) per window, in order; with ``threads`` > 0 the next ``threads`` windows are read
    ahead by that many reader threads (the reads release the GIL), so reading overlaps the consumer.

    ``reuse``: windows are read into a pool of ``threads`` + 1 buffers allocated once (a fresh array per
    window costs a page fault and zeroing per 4 kB of a 100 MB+ window, about as much as the read itself); a
    window's images are then valid until the next window is requested."""
    pool: list[np.ndarray] = []

    def read(i: int, pos: np.ndarray) -> np.ndarray:
        if not reuse:
            return store.read_images(rows[pos])
        buf = pool[i % len(pool)]
        return store.read_images(rows[pos], out=buf[: len(pos)])

    if reuse and windows:
        shape = (max(len(w) for w in windows),) + tuple(store.read_images(rows[:0]).shape[1:])
        pool = [np.empty(shape, np.float32) for _ in range(max(0, threads) + 1)]
    if threads <= 0:
        for i, pos in enumerate(windows):
            yield pos, read(i, pos)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as ex:
        inflight: deque = deque()
        # window i goes to buffer i % (threads+1): it is submitted only once window i-threads-1 was consumed
        for i, pos in enumerate(windows):
            inflight.append((pos, ex.submit(read, i, pos)))
            if len(inflight) > threads:
                p, fut = inflight.popleft()
                yield p, fut.result()
        while inflight:
            p, fut = inflight.popleft()
            yield p, fut.result()


def iter_batches(
    store: Any,
    rows: np.ndarray,
    windows: list[np.ndarray],
    batch_size: int,
    threads: int = 0,
    reuse: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions, raw images) batches of ``batch_size`` following ``windows`` (from
    :func:`shard_windows`): each window is read in one :meth:`read_images` call (``threads`` reader threads
    read windows ahead; the batches are the same); a batch may span two windows. Images are (k, B, S, S)
    float32 in nanomaggies, in the order of ``positions``. ``reuse`` (the training read): windows are read
    into buffers allocated once, and each batch is valid only until the next one is requested."""
    tail_pos, tail_img = np.zeros(0, np.int64), None
    for pos, img in _window_images(store, rows, windows, threads, reuse):
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
        if a < len(pos):  # copied: the window's buffer is reused for a later window
            tail_pos, tail_img = pos[a:], (img[a:].copy() if reuse else img[a:])
    if tail_img is not None and len(tail_pos):
        yield tail_pos, tail_img


class WindowDataset:
    """The worker side of :class:`WorkerBatches`, a torch ``IterableDataset``-compatible object for a
    ``DataLoader`` with ``batch_size=None``: worker ``w`` of ``W`` reads the windows ``w::W`` batch by batch,
    each batch straight into a free slot of its ring in shared memory (``ring[w]``, allocated once by the
    main process), and yields only (positions, worker, slot): a few bytes of IPC per batch, instead of a new
    shared-memory segment per batch (created, page-faulted and zeroed in the worker, mapped again in the
    main process). A slot is busy from the moment a worker fills it until the main process releases it;
    when all slots of a worker are busy (e.g. a consumer that holds batches) the batch travels the ordinary
    way, in a fresh shared tensor (slot −1). ``busy[w, s]`` holds the epoch (``epoch[0]``) that filled the
    slot: slots left busy by an epoch cut short are free again in the next epoch."""

    def __init__(
        self, store: Any, rows: np.ndarray, windows: list[np.ndarray], batch_size: int, ring, busy, epoch
    ):
        # the direct reader travels to the workers (a few paths and numbers); other stores are reopened there
        self.reader, self.path = store.reader("image"), str(store.path)
        self.rows, self.windows, self.batch_size = np.asarray(rows), windows, batch_size
        self.ring, self.busy, self.epoch = ring, busy, epoch

    def __iter__(self) -> Iterator[tuple[int, int, int, int, Any]]:
        """(window, first position in it, worker, slot, None) per batch, or with slot −1 the images as a
        fresh shared tensor. The positions are those of ``windows[window][first : first + batch_size]``:
        only small integers are pickled (a numpy array would become a tensor with its own shared segment)."""
        import torch

        from lensaudit.stamps.store import StampStore

        info = torch.utils.data.get_worker_info()
        w, nw = (0, 1) if info is None else (info.id, info.num_workers)
        read = StampStore.open(self.path).read_images if self.reader is None else self.reader.read
        ep = int(self.epoch[0])
        busy, ring = self.busy[w].numpy(), self.ring[w].numpy()
        for i in range(w, len(self.windows), nw):
            pos = self.windows[i]
            for a in range(0, len(pos), self.batch_size):
                p = pos[a : a + self.batch_size]
                free = np.flatnonzero(busy != ep)
                if len(free):
                    s = int(free[0])
                    busy[s] = ep
                    read(self.rows[p], out=ring[s, : len(p)])
                    yield i, a, w, s, None
                else:
                    t = torch.empty((len(p),) + ring.shape[2:]).share_memory_()
                    read(self.rows[p], out=t.numpy())
                    yield i, a, w, -1, t


#: shared-memory slot rings of closed non-persistent :class:`WorkerBatches`, by size in bytes (at most two
#: each), reused by the next loader of that size: an allocator cache, as torch keeps for pinned memory
_RINGS: dict[int, list] = {}


class WorkerBatches:
    """Shard-aware (positions, images) batches read by ``workers`` torch ``DataLoader`` worker processes
    (:class:`WindowDataset`; worker ``w`` reads the windows ``w::W``), iterated in the main process. Images
    are (k, B, S, S) float32 tensors in shared memory, each valid until the next batch is requested (as with
    ``iter_batches(reuse=True)``); batches do not span windows. Each worker owns ``prefetch·workers + 2``
    batch slots (the DataLoader's prefetch per worker, a worker left alone, and the batch held), allocated
    once per loader and page-faulted on first use only; a non-persistent loader gives its slots back to a
    small cache when it is closed or collected, for the next loader of the same size (an epoch that builds
    a new loader for its new order then pays no page faults and zeroing of fresh shared memory).
    ``persistent``: keep the worker processes between epochs (the windows stay those given here)."""

    def __init__(
        self,
        store: Any,
        rows: np.ndarray,
        windows: list[np.ndarray],
        batch_size: int,
        workers: int = 2,
        persistent: bool = False,
        prefetch: int = 2,
    ):
        import torch

        shape = tuple(store.read_images(np.asarray(rows[:0], np.int64)).shape[1:])
        slots = prefetch * workers + 2
        full = (max(1, workers), slots, batch_size) + shape  # workers=0: the DataLoader reads in this process
        nbytes = 4 * int(np.prod(full))
        cached = _RINGS.get(nbytes)
        # created in shared memory without touching it: a slot's pages are faulted when it is first filled
        storage = cached.pop() if cached else torch.UntypedStorage._new_shared(nbytes)
        self._storage, self._pooled, self._running = storage, not persistent, False
        self.ring = torch.empty(0).set_(storage).view(full)
        self.busy = torch.zeros(full[:2], dtype=torch.int64).share_memory_()
        self.epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.windows, self.batch_size = windows, batch_size
        ds = WindowDataset(store, rows, windows, batch_size, self.ring, self.busy, self.epoch)

        class _It(torch.utils.data.IterableDataset):
            def __iter__(self):
                return iter(ds)

        self.loader = torch.utils.data.DataLoader(
            _It(),
            batch_size=None,
            num_workers=workers,
            persistent_workers=persistent and workers > 0,
            prefetch_factor=prefetch if workers > 0 else None,
        )

    def close(self) -> None:
        """Give a non-persistent loader's slots to the cache (not while an epoch is being iterated: its
        workers may still fill them); the loader is not iterated again."""
        if self._storage is not None and self._pooled and not self._running:
            pool = _RINGS.setdefault(self._storage.nbytes(), [])
            if len(pool) < 2:
                pool.append(self._storage)
            self._storage = None

    def __del__(self) -> None:
        if _RINGS is not None:  # None while the interpreter shuts down
            self.close()

    def __iter__(self) -> Iterator[tuple[np.ndarray, Any]]:
        if self._storage is None:
            raise RuntimeError("WorkerBatches: iterated after close()")
        self.epoch += 1  # before the workers start (or resume): slots busy from an earlier epoch are free
        held: tuple[int, int] | None = None
        self._running = True
        try:
            for i, a, w, s, t in self.loader:
                if held is not None:
                    self.busy[held] = 0
                    held = None
                p = self.windows[i][a : a + self.batch_size]
                if s >= 0:
                    held = (w, s)
                    yield p, self.ring[w, s, : len(p)]
                else:
                    yield p, t
        finally:  # this generator holds ``self``: close() can only follow once its frame (with the
            # DataLoader's iterator, which shuts the workers down when collected) is gone
            self._running = False
            if held is not None:
                self.busy[held] = 0
