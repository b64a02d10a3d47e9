"""Data loading with an order that is a pure function of (seed, iteration, rank).

Lightning restarts a map-style loader from the start of the epoch on resume, and its epochs
mean nothing to a GAN that stops on generator steps. Here the batch of iteration ``i`` is
computed from ``i`` alone, so stopping and resuming replays exactly the data a straight run
would have seen, on any number of ranks.

Layout of one iteration: ``n_critic`` discriminator steps each take a global batch of
``batch_size`` samples; rank ``r`` of ``W`` takes the ``r``-th slice of each. Concatenating
the ranks' slices of a step gives the batch a single process would use: DDP over W ranks
computes the same gradients as one process on the global batch.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Protocol, Union, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate

import lightning as L

from ganforge.contract.components import as_pair


def _perm(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch * 7919 + 12345) % (2**63 - 1))
    return torch.randperm(n, generator=g)


class IterationSampler(Sampler[torch.Tensor]):
    """Yields, for each iteration, this rank's indices (``n_critic × per-rank batch``).

    Args:
        n: Dataset length.
        batch_size: Global batch per discriminator step.
        n_critic: Discriminator steps per iteration.
        seed: Data-order seed.
        rank, world_size: This process's place.
        start: A callable returning the iteration to start from (read at ``__iter__``, so a
            restored counter is honoured whenever Lightning re-creates the iterator).
        epoch_length: Iterations per Lightning "epoch" (only affects Lightning's epoch counter).
    """

    def __init__(self, n: int, batch_size: int, n_critic: int, seed: int, rank: int, world_size: int,
                 start: Callable[[], int], epoch_length: int) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"train.batch_size={batch_size} is the global batch and must divide by the world size "
                f"{world_size}; use a multiple of {world_size}."
            )
        if n < 1:
            raise ValueError("the dataset is empty")
        self.n, self.batch_size, self.n_critic, self.seed = n, batch_size, n_critic, seed
        self.rank, self.world_size = rank, world_size
        self.start = start
        self.epoch_length = max(1, epoch_length)
        self._cache: dict[int, torch.Tensor] = {}

    def _positions(self, it: int) -> torch.Tensor:
        per = self.batch_size // self.world_size
        base = it * self.n_critic * self.batch_size
        steps = torch.arange(self.n_critic).unsqueeze(1) * self.batch_size
        offs = self.rank * per + torch.arange(per).unsqueeze(0)
        return (base + steps + offs).reshape(-1)

    def _perm(self, e: int) -> torch.Tensor:
        if e not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            self._cache[e] = _perm(self.n, self.seed, e)
        return self._cache[e]

    def index_tensor(self, it: int) -> torch.Tensor:
        """:meth:`indices` as a tensor (int64, on the CPU)."""
        per = self.batch_size // self.world_size
        first = it * self.n_critic * self.batch_size + self.rank * per  # positions rise through the iteration
        last = first + (self.n_critic - 1) * self.batch_size + per - 1
        if first // self.n == last // self.n and (self.n_critic == 1 or self.world_size == 1):
            e = first // self.n  # the common case: one contiguous run of one epoch's permutation
            return self._perm(e)[first - e * self.n : last - e * self.n + 1]
        pos = self._positions(it)
        epochs = pos // self.n
        out = torch.empty_like(pos)
        for e in torch.unique(epochs).tolist():
            m = epochs == e
            out[m] = self._perm(e)[pos[m] % self.n]
        return out

    def indices(self, it: int) -> list[int]:
        """This rank's dataset indices for iteration ``it`` (``n_critic`` parts of ``batch_size / W``)."""
        return self.index_tensor(it).tolist()

    def __iter__(self) -> Iterator[torch.Tensor]:
        it = int(self.start())
        for k in range(self.epoch_length):
            yield self.index_tensor(it + k)

    def __len__(self) -> int:
        return self.epoch_length


class _BatchFetch(Dataset):
    """Fetch a whole batch at once. Datasets may implement PyTorch's batched ``__getitems__``
    (or ``get_batch``) to skip per-item Python."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: Union[list[int], torch.Tensor]) -> Any:
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()  # the sampler's tensor; datasets take lists of ints
        if hasattr(self.dataset, "get_batch"):
            return self.dataset.get_batch(indices)
        if hasattr(self.dataset, "__getitems__"):
            return default_collate(self.dataset.__getitems__(indices))
        return default_collate([self.dataset[i] for i in indices])


def fetch_batch(dataset: Any, indices: list[int]) -> Any:
    """The collated batch of ``dataset`` at ``indices`` (batched ``get_batch``/``__getitems__`` when the dataset has one)."""
    return _BatchFetch(dataset)[list(indices)]


@runtime_checkable
class InMemoryDataset(Protocol):
    """A dataset held in memory as tensors (the declared capability ``train.data_on_device: auto`` uses).

    ``tensors()`` returns ``(x, y)``: the batch the data loader would give for the indices
    ``0..len-1`` (same dtypes, same values; ``y`` is ``None`` for unconditional data). Views of the
    stored tensors, no copy where possible.
    """

    def tensors(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]: ...


DEVICE_MEMORY_FRACTION = 0.25  # auto: keep the data on the device when it takes under this of the free memory


def materialize(dataset: Any, chunk: int = 4096) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The whole dataset as ``(x, y)`` tensors, exactly as the data loader batches it."""
    if isinstance(dataset, InMemoryDataset):
        return dataset.tensors()
    fetch = _BatchFetch(dataset)
    xs, ys = [], []
    for i in range(0, len(dataset), chunk):
        x, y = as_pair(fetch[list(range(i, min(i + chunk, len(dataset))))])
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), (None if ys[0] is None else torch.cat(ys))


class _DeviceBatches(Dataset):
    """Batches gathered from tensors that already sit on the training device (one index per batch)."""

    def __init__(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, indices: Union[list[int], torch.Tensor]) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        idx = torch.as_tensor(indices, dtype=torch.long).to(self.x.device, non_blocking=True)
        if self.y is None:
            return self.x[idx]
        return self.x[idx], self.y[idx]


class DeviceIterations:
    """Whole iterations' batches that the module gathers itself (``train.iterations_per_batch`` > 1).

    What Lightning hands to ``training_step`` instead of a batch: the module runs up to ``size``
    iterations per Lightning batch and takes iteration ``it``'s batch from :meth:`batch`, the same
    gather on the device as the one-batch-per-iteration path. The data of an iteration is a function
    of its number alone, so the module may end a chunk early (at a sync point) without losing a batch.
    """

    def __init__(self, sampler: IterationSampler, fetch: _DeviceBatches, size: int) -> None:
        self.sampler, self.fetch, self.size = sampler, fetch, size

    def batch(self, it: int) -> Any:
        """The batch of iteration ``it`` on this rank (what the data loader would give)."""
        return self.fetch[self.sampler.index_tensor(it)]


class IterationTickets:
    """What Lightning iterates when the module gathers its own batches: the same
    :class:`DeviceIterations` per Lightning batch, ``length`` times (no loader, no transfer hooks'
    work: it holds no tensors)."""

    def __init__(self, source: DeviceIterations, length: int) -> None:
        self.source, self.length = source, length

    def __iter__(self) -> Iterator[DeviceIterations]:
        for _ in range(self.length):
            yield self.source

    def __len__(self) -> int:
        return self.length


class GANDataModule(L.LightningDataModule):
    """Wraps a :class:`ganforge.contract.components.GANDataset` for the alternating loop.

    ``on_device`` (``train.data_on_device``): ``auto``, ``True`` or ``False``; see
    :meth:`device_tensors`. The order of the batches is the sampler's either way.
    """

    def __init__(self, dataset: Any, batch_size: int, n_critic: int, seed: int, num_workers: int = 0,
                 start: Optional[Callable[[], int]] = None, total_iterations: Optional[int] = None,
                 on_device: Union[str, bool] = "auto", iterations_per_batch: int = 1) -> None:
        super().__init__()
        self.iterations_per_batch = iterations_per_batch  # requested; chunk_size() decides per fit
        self.on_device = on_device
        self._device_data: Optional[tuple[torch.Tensor, Optional[torch.Tensor]]] = None
        self.dataset = dataset
        self.info = dataset.info
        self.batch_size = batch_size
        self.n_critic = n_critic
        self.seed = seed
        self.num_workers = num_workers
        self.start = start or (lambda: 0)
        # One Lightning "epoch" spans the whole run when its length is known, so the progress bar
        # counts iterations to the end; the order itself never depends on epochs.
        self.total_iterations = total_iterations

    def world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:  # used outside Lightning (evaluation, tests): the process group decides
            from ganforge.evaluation.distributed import rank_world

            return rank_world()
        return trainer.global_rank, trainer.world_size

    def sampler(self) -> IterationSampler:
        rank, world = self.world()
        epoch_length = self.total_iterations or max(1, len(self.dataset) // (self.batch_size * self.n_critic))
        return IterationSampler(len(self.dataset), self.batch_size, self.n_critic, self.seed, rank, world,
                                self.start, epoch_length)

    def device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def device_tensors(self) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """The dataset as tensors on the training device, or ``None`` for the data-loader path.

        ``auto``: an :class:`InMemoryDataset` whose tensors take under a quarter of the free device
        memory (on the CPU: always, they are in memory already). ``True``: any dataset, read once
        through its batched fetch. ``False``: never.
        """
        if self.on_device is False or (self.on_device == "auto" and not isinstance(self.dataset, InMemoryDataset)):
            return None
        if self._device_data is not None:
            return self._device_data
        device = self.device()
        x, y = materialize(self.dataset)
        if self.on_device == "auto" and device.type == "cuda":
            size = sum(t.numel() * t.element_size() for t in (x, y) if t is not None)
            if size > DEVICE_MEMORY_FRACTION * torch.cuda.mem_get_info(device)[0]:
                return None
        self._device_data = (x.to(device), None if y is None else y.to(device))
        return self._device_data

    def train_dataloader(self) -> DataLoader:
        on_device = self.device_tensors()
        if on_device is not None:  # no workers: a gather on the device per batch
            size = self.chunk_size()
            if size > 1:  # the module gathers each iteration's batch itself, up to `size` per Lightning batch
                sampler = self.sampler()
                return IterationTickets(DeviceIterations(sampler, _DeviceBatches(*on_device), size), len(sampler))
            return DataLoader(_DeviceBatches(*on_device), sampler=self.sampler(), batch_size=None, num_workers=0)
        self._record(1)  # a loader's batches: one iteration each
        return DataLoader(
            _BatchFetch(self.dataset),
            sampler=self.sampler(),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def chunk_size(self) -> int:
        """Iterations per Lightning batch this fit: ``iterations_per_batch`` where every callback
        handles several iterations per batch (:func:`ganforge.loop.module.iterations_per_batch`), else 1.
        Recorded in the module's ``fast_paths``."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1
        from ganforge.loop.module import iterations_per_batch

        size = iterations_per_batch(trainer, self.iterations_per_batch)
        self._record(size)
        return size

    def _record(self, size: int) -> None:
        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        if isinstance(getattr(module, "fast_paths", None), dict):
            module.fast_paths["iterations_per_batch"] = size

    def real_fetch(self, indices: list[int]) -> Any:
        """The batch of the given dataset indices."""
        return _BatchFetch(self.dataset)[indices]

    def real_batches(self, num: Optional[int], batch_size: int = 500, start: int = 0) -> Callable[[], Iterator[Any]]:
        """This rank's shard of real data (``num`` over all ranks, ``None``: everything), in batches:
        positions ``start .. start + num`` of a permutation seeded with ``seed + 1`` (``start`` > 0
        gives a set disjoint from the first ``start``: the real-vs-real floor)."""

        def gen() -> Iterator[Any]:
            rank, world = self.world()
            left = len(self.dataset) - start
            total = left if num is None else min(num, left)
            order = _perm(len(self.dataset), self.seed + 1, 0)[start : start + total]
            mine = order[rank::world]
            fetch = _BatchFetch(self.dataset)
            for i in range(0, len(mine), batch_size):
                yield fetch[mine[i : i + batch_size].tolist()]

        return gen
