"""PhiMLDataset: sliding windows over cached trajectories, served as batches of named PhiML tensors.

Step 3 of the pipeline (scenarios -> manager -> dataset -> trainer). Replaces the legacy `TensorDataset` + torch
`DataLoader`: no torch, named dims throughout, reads only the frames a window needs.

Batch layout (dim types chosen so that `phiml.nn` networks consume them directly via `math.native_call`, which
merges batch dims into N and channel dims into C):

| key             | tensor                                                                          |
|-----------------|---------------------------------------------------------------------------------|
| `initial_state` | `(batchᵇ, [historyᶜ=n_input], xˢ, [yˢ], channelsᶜ=velocity.x,velocity.y,...)`   |
| `targets`       | `(batchᵇ, timeᵇ=n_targets, xˢ, [yˢ], channelsᶜ=<dynamic fields only>)`          |
| `window_ids`    | `(batchᵇ)` int: position of each window in `dataset.windows()`                  |
| `sim`, `start`  | `(batchᵇ)` int: simulation index and start frame (`-1` for generated samples)   |
| `epoch`, `position` | ints: pass them back as `iterate_batches(..., epoch=, start=)` to resume    |

`initial_state` holds the input fields (dynamic and static, e.g. an inflow mask); `targets` only the dynamic fields.
Values are served as cached: centred fields at cell centres, staggered fields (smoke's velocity) in their exact face
layout (`scenarios.staggered_faces`: channel `velocity.x` holds the lower x-faces), so `to_fields` gives the solver's
own `StaggeredGrid` back.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
import threading
import warnings
from typing import Iterator

import numpy as np
from phiml import math
from phiml.math import Tensor, batch, channel, spatial

from . import augmentation, memory, normalization, sampler
from ._windows import SOURCES, Layout, WindowSource
from .cache import Cache, cache_of
from .config import DatasetConfig
from .formats import CacheWarning


class PhiMLDataset:
    """Windows over the cached simulations `sims` of a `DataManager`, as batches of PhiML tensors.

    Args:
        manager: The cache (a `DataManager` or its `Cache`); the sims must be generated.
        sims: Sim indices of this split (default: all cached sims, warning with `CacheWarning` about every sim the
            manifest knows of but cannot serve: `left_out`). Windows never cross simulations.
        config: `DatasetConfig` (window sizes, batch size, mode, seed, ...); keyword arguments override its fields.
        stats: Normalisation statistics (`normalization.field_stats` of the training split). When omitted with
            `config.normalize`, the statistics of this dataset's own sims are used: right for the training split only.
            Validation and test datasets take `stats=train.stats` (the `Trainer` refuses a validation set without).
        generated: Optional `(initial_state, targets)` tensors in this dataset's batch layout (with `windowᵇ`
            instead of `batchᵇ`, same channel item names, physical units), or another `PhiMLDataset` over a cache
            of the same layout, whose windows are mixed in.
        alpha: Fraction of the windows of an epoch taken from `generated`: `round(alpha * n_real / (1 - alpha))`
            of them, drawn afresh each epoch.
        shard: `(rank, world_size)`: this process sees only its share of each epoch (equal shares; see `epoch_order`).
        worker: `(index, workers)`: this data-loading worker's part of the shard; the workers of one process
            together read every window of the shard once per epoch (shares may differ by one window).
        noise: `(level, seed)`: fixed observation noise on every served dynamic frame, relative to its rms (see
            `_windows.TrajectorySource`); `(0.0, 0)`: the cached values as they are. Statistics are of the clean data.
        **overrides: Fields of `DatasetConfig`.

    Example:
        >>> dm = DataManager(tmp, Burgers2D(resolution=16, steps=4))
        >>> _ = dm.generate(3, progress=False)
        >>> ds = PhiMLDataset(dm, sims=[0, 1, 2], n_targets=2, normalize=False)
        >>> b = next(ds.iterate_batches(4))
        >>> b['initial_state'].shape.names, b['initial_state'].shape.get_item_names('channels')
        (('batch', 'x', 'y', 'channels'), ('velocity.x', 'velocity.y'))
        >>> b['targets'].shape.sizes
        (4, 2, 16, 16, 2)
    """

    def __init__(
        self,
        manager,
        sims=None,
        config: DatasetConfig = None,
        stats: dict = None,
        generated=None,
        alpha: float = 0.0,
        shard: tuple = (0, 1),
        worker: tuple = (0, 1),
        noise: tuple = (0.0, 0),
        **overrides,
    ):
        config = dataclasses.replace(config or DatasetConfig(), **overrides)
        self.cache: Cache = cache_of(manager)
        self.config, self.shard, self.worker = config, tuple(shard), tuple(worker)
        self.noise = (float(noise[0]), int(noise[1]))
        scenario = self.cache.scenario
        cached = self.cache.cached_indices()
        self.sims = sorted(int(s) for s in (cached if sims is None else sims))
        self.left_out = self.cache.left_out() if sims is None else {}  # all cached sims: what they do not include
        if self.left_out:
            warnings.warn(
                f"PhiMLDataset over all cached sims of {self.cache.directory} leaves out sims "
                + '; '.join(f"{i}: {why}" for i, why in self.left_out.items())
                + ". Run generate() to repair them, or pass sims= explicitly.",
                CacheWarning,
                stacklevel=2,
            )
        if not self.sims:
            raise ValueError(
                f"Empty split: no simulations given (cached: {len(cached)} sims in {self.cache.directory}). Run DataManager.generate() first."
            )
        missing = sorted(set(self.sims) - set(cached))
        if missing:
            raise ValueError(
                f"Sims {missing[:10]} are not cached in {self.cache.directory} (cached: {cached[:10]}...). Run DataManager.generate({max(missing) + 1})."
            )
        self.layout = self._layout(config, scenario)
        n_frames = scenario.frames
        if config.n_input + config.n_targets > n_frames:
            raise ValueError(
                f"Window of n_input={config.n_input} + n_targets={config.n_targets} frames is longer than the "
                f"trajectories ({n_frames} frames); valid: n_input + n_targets <= {n_frames}"
            )
        rank, world = self.shard
        if not 0 <= rank < world:
            raise ValueError(f"shard=({rank}, {world}): rank must be in 0..{world - 1}")
        if not 0 <= self.worker[0] < self.worker[1]:
            raise ValueError(f"worker={self.worker}: the index must be in 0..{self.worker[1] - 1}")
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        plan = memory.plan(config, self.data_bytes(), self.window_bytes(), self._handle_bytes())
        self.in_memory, self.max_open_files, self.prefetch = plan.in_memory, plan.max_open_files, plan.prefetch
        source = SOURCES['memory' if self.in_memory else 'lazy'] if config.mode == 'auto' else SOURCES[config.mode]
        self.source = source(self.cache, self.sims, self.layout, config.hop, self.max_open_files, self.noise)
        self.generated = self._generated_source(generated)
        self.alpha = alpha if self.generated is not None else 0.0
        self.stats = (
            stats
            if stats is not None or not config.normalize
            else normalization.field_stats(self.source, self.layout.inputs)
        )
        names = tuple(augmentation.AUGMENTATIONS) if config.augment is True else tuple(config.augment or ())
        self.symmetries = augmentation.Symmetries.of(scenario, names) if names else None

    def variant(self, sims=None, generated=None, alpha: float = 0.0, shard=None, worker=None, noise=None, **overrides):
        """A dataset over the same cache, normalised with the same statistics (this one's), with this one's sims,
        config, shard, worker and observation noise except where given; generated samples only where given.

        Example:
            >>> dm = DataManager(tmp, Burgers2D(resolution=16, steps=6))
            >>> _ = dm.generate(3, progress=False)
            >>> train = PhiMLDataset(dm, [0, 1], n_targets=2)
            >>> val = train.variant(sims=[2], shuffle=False, augment=False)
            >>> val.sims, val.stats is train.stats, val.config.shuffle
            ([2], True, False)
        """
        return PhiMLDataset(
            self.cache,
            self.sims if sims is None else sims,
            self.config,
            self.stats,
            generated,
            alpha,
            self.shard if shard is None else shard,
            self.worker if worker is None else worker,
            self.noise if noise is None else noise,
            **overrides,
        )

    @property
    def scenario(self):
        """The scenario of the cached sims."""
        return self.cache.scenario

    # --- construction helpers ---

    @staticmethod
    def _layout(config: DatasetConfig, scenario) -> Layout:
        all_fields = tuple(scenario.fields)
        inputs = tuple(config.fields) or all_fields
        unknown = [f for f in inputs + tuple(config.target_fields) if f not in all_fields]
        if unknown:
            raise ValueError(f"Unknown field(s) {unknown}; scenario '{scenario.name}' has {list(all_fields)}")
        static = tuple(f for f in all_fields if scenario.fields[f].static)
        inputs = tuple(f for f in inputs if f not in static) + tuple(f for f in inputs if f in static)
        outputs = tuple(config.target_fields) or tuple(f for f in inputs if f not in static)
        bad = [f for f in outputs if f in static]
        if bad or not outputs:
            raise ValueError(f"Target fields must be dynamic fields; got {list(outputs)} (static: {list(static)})")
        components = {f: (tuple(scenario.spatial_dims) if scenario.fields[f].vector else ()) for f in all_fields}
        return Layout(
            inputs, outputs, components, static, tuple(scenario.spatial_dims), config.n_input, config.n_targets
        )

    def _generated_source(self, generated):
        if generated is None:
            return None
        if isinstance(generated, PhiMLDataset):
            if generated.layout.channels(generated.layout.inputs) != self.input_channels:
                raise ValueError(
                    f"Generated dataset has channels {generated.input_channels}; expected {self.input_channels}"
                )
            return generated.source
        initial, targets = generated
        for t, want in ((initial, self.input_channels), (targets, self.target_channels)):
            if 'channels' not in t.shape or list(t.shape.get_item_names('channels') or ()) != want:
                raise ValueError(f"Generated samples must have channels {want}, got {t.shape}")
        return WindowSource(
            initial, targets, self._order(initial, 'window', history=True), self._order(targets, 'window', time=True)
        )

    def _order(self, t: Tensor, batch_name: str, history=False, time=False) -> list[str]:
        names = (
            [batch_name]
            + (['history'] if history and self.layout.n_input > 1 else [])
            + (['time'] if time else [])
            + list(self.layout.spatial)
            + ['channels']
        )
        if set(t.shape.names) != set(names):
            raise ValueError(f"Generated samples must have dims {names}, got {t.shape}")
        return names

    def _handle_bytes(self) -> int:
        """Memory one open cache file holds: a small handle, or the whole sim for formats without partial reads."""
        fmt = self.cache.format
        return fmt.handle_bytes if fmt.partial_reads else max(1, self.data_bytes() // len(self.sims))

    def _field_bytes(self) -> dict[str, tuple[int, bool]]:
        """Per field read: bytes of one frame and whether it has frames. Every file is checked against
        `scenario.field_shape` when it is opened, so the scenario gives these for all sims."""
        scenario, item = self.scenario, np.dtype(self.scenario.dtype).itemsize
        shapes = {f: scenario.field_shape(f) for f in set(self.layout.inputs) | set(self.layout.outputs)}
        return {f: (s.without('time').volume * item, 'time' in s) for f, s in shapes.items()}

    def data_bytes(self) -> int:
        """Bytes of all frames of the sims and fields this dataset reads."""
        frames = self.scenario.frames
        return len(self.sims) * sum(b * (frames if dynamic else 1) for b, dynamic in self._field_bytes().values())

    def window_bytes(self) -> int:
        """Bytes of one window's frames (all fields it reads)."""
        return sum(b * (self.layout.window_length if dynamic else 1) for b, dynamic in self._field_bytes().values())

    # --- windows ---

    @property
    def input_channels(self) -> list[str]:
        """Item names of `initial_state`'s `channels` dim."""
        return self.layout.channels(self.layout.inputs)

    @property
    def target_channels(self) -> list[str]:
        """Item names of `targets`' `channels` dim."""
        return self.layout.channels(self.layout.outputs)

    def __len__(self):
        """Real windows in this dataset (all shards)."""
        return len(self.source)

    def windows(self) -> list[tuple[int, int]]:
        """`(sim, start_frame)` of every real window, indexed by window id."""
        return list(zip(self.source.sim_of.tolist(), self.source.start_of.tolist()))

    def n_generated(self) -> int:
        """Generated windows mixed into each epoch."""
        if not self.alpha:
            return 0
        return int(round(self.alpha * len(self) / (1 - self.alpha)))

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Window ids of this shard (and worker) in epoch `epoch`, in visiting order; ids `>= len(self)` are generated.

        A pure function of `(config.seed, epoch, shard, worker)`. With `world_size > 1` shards, the last `len % world_size`
        windows of the shuffled order are left out of that epoch, so that every rank gets the same number of windows
        and takes the same number of steps (data-parallel training would otherwise wait forever on the longer ranks).
        """
        pool = len(self.generated) if self.generated is not None else 0
        return sampler.epoch_order(
            len(self), self.n_generated(), pool, self.config.seed, epoch, self.config.shuffle, self.shard, self.worker
        )

    def n_batches(self, batch_size: int = None, epoch: int = 0) -> int:
        """Batches this shard yields per epoch."""
        n, b = len(self.epoch_order(epoch)), self._batch_size(batch_size)
        return n // b if self.config.drop_last else -(-n // b)

    def _batch_size(self, batch_size) -> int:
        """`batch_size`, or `config.batch_size` if `None`; anything but an integer >= 1 is refused."""
        if batch_size is None:
            return self.config.batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(
                f"batch_size must be an integer >= 1 (or None for config.batch_size={self.config.batch_size}), got {batch_size!r}"
            )
        return int(batch_size)

    # --- batches ---

    def iterate_batches(
        self, batch_size: int = None, epoch: int = 0, start: int = 0, drop_last: bool = None, prefetch: int = None
    ) -> Iterator[dict]:
        """Yields the batches of one epoch of this shard.

        Args:
            batch_size: Windows per batch (default `config.batch_size`).
            epoch: Epoch number; order and augmentation are a function of `(seed, epoch, window id)`.
            start: Position in the epoch to resume from (`batch['position']` of the last batch seen).
            drop_last: Drop the last partial batch (default `config.drop_last`).
            prefetch: Batches assembled ahead in a background thread (default: `self.prefetch`, resolved from the config).

        Yields:
            `{'initial_state': Tensor (batchᵇ, [historyᶜ], xˢ, [yˢ], channelsᶜ),
              'targets': Tensor (batchᵇ, timeᵇ, xˢ, [yˢ], channelsᶜ),
              'window_ids', 'sim', 'start': Tensor (batchᵇ) int, 'epoch': int, 'position': int}`
        """
        batch_size = self._batch_size(batch_size)
        drop_last = self.config.drop_last if drop_last is None else drop_last
        order = self.epoch_order(epoch)
        spans = sampler.batch_spans(len(order), batch_size, start, drop_last)
        make = lambda span: self._batch(order[span[0] : span[1]], epoch, span[1])
        prefetch = self.prefetch if prefetch is None else prefetch
        yield from (_prefetched(make, spans, prefetch) if prefetch else map(make, spans))

    def _batch(self, ids: np.ndarray, epoch: int, position: int) -> dict:
        initial, targets, sims, starts = self._gather(ids)
        if self.symmetries is not None:
            transforms = [
                augmentation.Transform.draw(
                    np.random.default_rng([self.config.seed, epoch, int(i), 2]),
                    self.symmetries,
                    self.scenario.grid_size,
                )
                for i in ids
            ]
            staggered = self.symmetries.staggered
            initial = augmentation.apply(initial, self.input_channels, self.layout.spatial, transforms, staggered)
            targets = augmentation.apply(targets, self.target_channels, self.layout.spatial, transforms, staggered)
        b, initial_shape, target_shape = self._shapes(len(ids))
        result = {
            'initial_state': math.tensor(initial, initial_shape, convert=False),  # NumPy, whatever backend is
            'targets': math.tensor(targets, target_shape, convert=False),  # current in another thread
            'window_ids': math.tensor(ids, b, convert=False),
            'sim': math.tensor(sims, b, convert=False),
            'start': math.tensor(starts, b, convert=False),
            'epoch': epoch,
            'position': position,
        }
        return self._normalize(result) if self.config.normalize else result

    @functools.lru_cache(maxsize=4)
    def _shapes(self, n: int):
        """`batch(batch=n)` and the shapes of `initial_state` and `targets` for `n` windows, built once per size."""
        b = batch(batch=n)
        space = spatial(**{d: self.scenario.grid_size[d] for d in self.layout.spatial})
        history = channel(history=self.layout.n_input) if self.layout.n_input > 1 else math.EMPTY_SHAPE
        initial = math.concat_shapes(b, history, space, channel(channels=','.join(self.input_channels)))
        targets = math.concat_shapes(
            b, batch(time=self.layout.n_targets), space, channel(channels=','.join(self.target_channels))
        )
        return b, initial, targets

    def _gather(self, ids: np.ndarray):
        """Packed arrays of windows `ids` (real and generated), in the order of `ids`."""
        real = ids < len(self)
        if real.all():
            init, targ = self.source.gather(ids)
            return init, targ, self.source.sim_of[ids], self.source.start_of[ids]
        parts = [
            (self.source, ids[real], np.flatnonzero(real)),
            (self.generated, ids[~real] - len(self), np.flatnonzero(~real)),
        ]
        init = targ = None
        sims, starts = np.full(len(ids), -1), np.full(len(ids), -1)
        for source, local, where in parts:
            if not len(local):
                continue
            i, t = source.gather(local)
            if init is None:
                init = np.empty((len(ids), *i.shape[1:]), i.dtype)
                targ = np.empty((len(ids), *t.shape[1:]), t.dtype)
            init[where], targ[where] = i, t
            if source is self.source:
                sims[where], starts[where] = source.sim_of[local], source.start_of[local]
        return init, targ, sims, starts

    # --- normalisation and fields ---

    def _normalize(self, batch_: dict) -> dict:
        """Normalises `initial_state` and `targets` of a batch in physical units."""
        return {
            **batch_,
            'initial_state': normalization.normalize(batch_['initial_state'], self.stats, self.input_channels),
            'targets': normalization.normalize(batch_['targets'], self.stats, self.target_channels),
        }

    def denormalize(self, t: Tensor) -> Tensor:
        """Physical units of a normalised packed tensor `Tensor (..., channelsᶜ)` (no-op without normalisation)."""
        return normalization.denormalize(t, self.stats) if self.config.normalize else t

    def normalized(self, t: Tensor) -> Tensor:
        """Normalised units of a packed tensor `Tensor (..., channelsᶜ)` in physical units (inverse of `denormalize`;
        a no-op without normalisation)."""
        return normalization.normalize(t, self.stats) if self.config.normalize else t

    def close(self):
        """Closes open cache files (lazy mode)."""
        self.source.close()


def _prefetched(make, spans, depth: int):
    """Runs `make(span)` for each span in a background thread, at most `depth` batches ahead."""
    q = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for span in spans:
                if stop.is_set():
                    return
                q.put(make(span))
        except BaseException as err:  # handed to the consumer
            q.put(err)
        q.put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)
