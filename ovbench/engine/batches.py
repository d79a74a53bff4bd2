"""The stream of batches a rank trains on: seeded, sharded across ranks, resumable at any iteration."""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate


class ShardedBatchSampler(Sampler[list[int]]):
    """Index lists of this rank's share of each global batch, for iterations ``start .. stop - 1``.

    The sample stream is the concatenation of epochs, epoch ``e`` being a permutation of
    ``range(dataset_len)`` drawn from ``torch.Generator().manual_seed(seed + e)``; global batch
    ``it`` is stream positions ``[it * global_batch, (it + 1) * global_batch)`` and rank ``r``
    takes the ``r``-th of ``world_size`` equal slices. The order therefore depends only on the
    seed and the iteration, so resuming needs no sampler state.

    With ``with_epoch`` the keys are ``(index, epoch)`` pairs, so that a dataset can draw its
    random augmentation from them and stay reproducible across resumes and worker processes.
    """

    def __init__(self, dataset_len: int, global_batch: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1, with_epoch: bool = False) -> None:
        if dataset_len < 1:
            raise ValueError("cannot sample batches from an empty dataset")
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by world size {world_size}")
        self.dataset_len, self.global_batch, self.seed = dataset_len, global_batch, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size
        self.with_epoch = with_epoch
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _index(self, position: int) -> int | tuple[int, int]:
        epoch, offset = divmod(position, self.dataset_len)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.dataset_len, generator=torch.Generator().manual_seed(self.seed + epoch))
        return (int(self._perm[offset]), epoch) if self.with_epoch else int(self._perm[offset])

    def __iter__(self) -> Iterator[list[int] | list[tuple[int, int]]]:
        per_rank = self.global_batch // self.world_size
        for it in range(self.start, self.stop):
            first = it * self.global_batch + self.rank * per_rank
            yield [self._index(p) for p in range(first, first + per_rank)]

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


def _cycle(data: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``data`` again and again (re-iterating it, not caching it)."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training data yielded no batch")


def batch_stream(data: Dataset | Iterable[Any], *, global_batch: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1, collate_fn: Callable[[Sequence[Any]], Any] | None = None,
                 num_workers: int = 0) -> Iterator[Any]:
    """This rank's batches for iterations ``start .. stop - 1``.

    A map-style ``Dataset`` is sampled by :class:`ShardedBatchSampler` and collated by
    ``collate_fn`` (default: ``torch.utils.data.default_collate``) in a DataLoader. Any other
    iterable is taken as this rank's ready-made batches, cycled, and fast-forwarded past the
    ``start`` batches already consumed (it must be re-iterable and yield the same order each pass
    for an exact resume; under DDP the caller shards it). A dataset whose ``keyed_by_epoch`` attribute
    is true receives ``(index, epoch)`` keys (see :class:`ShardedBatchSampler`).
    """
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        sampler = ShardedBatchSampler(len(data), global_batch, seed, start, stop, rank, world_size,
                                      with_epoch=bool(getattr(data, "keyed_by_epoch", False)))
        # Own generator: creating the loader must not draw from the global torch RNG, or a resumed
        # run would see different random numbers. Worker RNGs restart on resume (not captured).
        return iter(DataLoader(data, batch_sampler=sampler, collate_fn=collate_fn or default_collate,
                               num_workers=num_workers, generator=torch.Generator().manual_seed(seed + rank)))
    return itertools.islice(_cycle(data), start, None)
