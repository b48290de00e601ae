"""Window sources for `PhiMLDataset`: where the frames of a window come from, as packed NumPy arrays.

A *packed* array puts all fields into one trailing channel axis whose item names are `field.component`
(`velocity.x`, `velocity.y`) or the field name for scalars (`density`). Sources return, for a list of window ids,
`initial [B, (n_input,) *spatial, C_in]` and `targets [B, n_targets, *spatial, C_out]`; the dataset wraps them as
PhiML tensors once per batch.

Lazy sources read through `DataManager.open_sim`, so every frame they serve is verified (identity on open, xxh3-64 checksum
per frame on first read), in any storage format.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from phiml import math
from phiml.math import Tensor, channel

from .cache import Cache
from .registry import Registry
from .scenarios import to_field


@dataclass(frozen=True)
class Layout:
    """Which fields go where, and the channel item names that result.

    Attributes:
        inputs: Fields in `initial_state` (dynamic, then static).
        outputs: Dynamic fields in `targets`.
        components: `{field: item names of its vector dim, or () for scalars}`.
        static: Names of the static fields.
        spatial: Spatial dim names, e.g. `('x', 'y')`.
        n_input: Frames in the initial state; `> 1` adds a channel dim `history`.
        n_targets: Frames in the targets.
    """

    inputs: tuple
    outputs: tuple
    components: dict
    static: tuple
    spatial: tuple
    n_input: int
    n_targets: int

    def channels(self, fields) -> list[str]:
        """Channel item names of the packed `fields`, e.g. `['velocity.x', 'velocity.y', 'density']`."""
        return [f'{f}.{c}' if c else f for f in fields for c in (self.components[f] or ('',))]

    @property
    def window_length(self) -> int:
        return self.n_input + self.n_targets

    def unpack(self, t: Tensor) -> dict[str, Tensor]:
        """Splits a packed `Tensor (..., channelsᶜ)` into `{field: Tensor (..., [vectorᶜ])}` with item names restored.

        Raises:
            ValueError: `t` has no named `channels` dim, or channels this layout does not have, or only some
                components of a vector field; the message lists the channels it expects.
        """
        items = list(t.shape.get_item_names('channels') or ()) if 'channels' in t.shape else []
        fields = list(dict.fromkeys(field_of(c) for c in items))
        known = self.channels(tuple(self.components))
        unknown = [c for c in items if c not in known]
        incomplete = [] if unknown else [f for f in fields if set(self.channels((f,))) - set(items)]
        if not items or unknown or incomplete:
            raise ValueError(
                f"Expected a Tensor with a 'channels' dim holding whole fields of this dataset's channels {known}; got "
                f"{t.shape}"
                + (f" (unknown: {unknown})" if unknown else '')
                + (f" (incomplete: {incomplete})" if incomplete else '')
            )
        result = {}
        for f in fields:
            comps = self.components[f]
            if comps:
                part = t.channels[[f'{f}.{c}' for c in comps]]
                result[f] = math.rename_dims(part, 'channels', channel(vector=','.join(comps)))
            else:
                result[f] = t.channels[f]
        return result

    def pack(self, values: dict[str, Tensor]) -> Tensor:
        """Inverse of `unpack`: `{field: Tensor (..., [vectorᶜ])}` -> `Tensor (..., channelsᶜ)` in this layout's order
        (`inputs`, then any other field given)."""
        order = [f for f in (*self.inputs, *self.outputs) if f in values]
        parts = []
        for f in dict.fromkeys(order):
            v = values[f]
            parts.append(
                math.rename_dims(v, 'vector', channel(channels=','.join(self.channels((f,)))))
                if self.components[f]
                else math.expand(v, channel(channels=f))
            )
        return math.concat(parts, 'channels') if len(parts) > 1 else parts[0]

    def to_fields(self, t: Tensor, scenario) -> dict:
        """PhiFlow Fields (grid type, bounds, boundaries) of a packed tensor in physical units.

        Args:
            t: `Tensor (..., xˢ, [yˢ], channelsᶜ)`, e.g. `dataset.denormalize(batch['targets'])`.
            scenario: The scenario of the cache (grid, bounds, boundaries).

        Returns:
            `{field: CenteredGrid or StaggeredGrid}` keeping the batch dims of `t`.
        """
        metadata = scenario.metadata(0)
        return {f: to_field(v, metadata, f) for f, v in self.unpack(t).items()}


def last_frame(state: Tensor) -> Tensor:
    """The newest frame of an initial state `(batchᵇ, [historyᶜ], xˢ, [yˢ], channelsᶜ)`: drops `history` if present."""
    return state.history[-1] if 'history' in state.shape else state


def field_of(channel_item: str) -> str:
    """Field name of a packed channel item: `'velocity.x' -> 'velocity'`, `'density' -> 'density'`."""
    return channel_item.rpartition('.')[0] or channel_item


def pack(arrays: dict[str, np.ndarray], fields, layout: Layout) -> np.ndarray:
    """Concatenates field arrays along a trailing channel axis (scalars get one)."""
    parts = [arrays[f] if layout.components[f] else arrays[f][..., None] for f in fields]
    return np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


class TrajectorySource:
    """Windows cut from cached trajectories; `MemorySource` and `LazySource` say where the frames come from.

    Variants are registered in `SOURCES` under the `dataset.mode` that selects them (`'memory'`, `'lazy'`); a new way
    of holding frames is one `@SOURCES.register('name')`ed subclass implementing `_frames`.

    Args:
        cache: The cache.
        sims: Sim indices that this source covers.
        layout: Fields and window sizes.
        hop: Distance between consecutive window starts.
        max_open_files: At most this many files stay open (LRU).
        noise: `(level, seed)`: observation noise added to every served dynamic frame, `level` times the frame's rms
            (per field) times a standard normal draw seeded by `(seed, sim, frame, field)`: fixed per sim and frame,
            the same in every epoch, window and source.
    """

    def __init__(self, cache: Cache, sims, layout: Layout, hop: int, max_open_files: int = 256, noise=(0.0, 0)):
        self.cache, self.layout, self.noise = cache, layout, (float(noise[0]), int(noise[1]))
        self.sims = list(sims)
        self._files = OrderedDict()
        self._max_open = max_open_files
        frames = cache.scenario.frames  # every file is checked against the scenario's shapes when opened
        starts = [(s, t) for s in self.sims for t in range(0, frames - layout.window_length + 1, hop)]
        self.sim_of = np.array([s for s, _ in starts], dtype=np.int64)
        self.start_of = np.array([t for _, t in starts], dtype=np.int64)
        self.row_of = np.searchsorted(self.sims, self.sim_of)  # position of each window's sim in `self.sims` (sorted)
        self._static = {}

    def __len__(self):
        return len(self.sim_of)

    def _sim(self, sim):
        """Open, verified file of sim `sim`; at most `max_open_files` files stay open (LRU)."""
        if sim in self._files:
            self._files.move_to_end(sim)
        else:
            if len(self._files) >= self._max_open:
                self._files.popitem(last=False)[1].close()
            self._files[sim] = self.cache.open_sim(sim)
        return self._files[sim]

    def close(self):
        for f in self._files.values():
            f.close()
        self._files.clear()

    def gather(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Packed `initial [B, (n_input,) *spatial, C_in]` and `targets [B, n_targets, *spatial, C_out]`."""
        fields = sorted(set(self.layout.inputs) | set(self.layout.outputs))
        frames = self._frames(ids, fields)
        if self.noise[0]:
            self._add_noise(frames, ids)
        return assemble(frames, self.layout)

    def _add_noise(self, frames: dict[str, np.ndarray], ids: np.ndarray):
        """Adds the fixed observation noise of each served frame in place (`frames` are copies)."""
        level, seed = self.noise
        for f, a in frames.items():
            if f in self.layout.static:
                continue
            tag = zlib.crc32(f.encode())
            for j, i in enumerate(ids):
                sim, start = int(self.sim_of[i]), int(self.start_of[i])
                for k in range(a.shape[1]):
                    frame = a[j, k]
                    rms = np.sqrt(np.mean(np.square(frame, dtype=np.float64)))
                    draw = np.random.default_rng([seed, sim, start + k, tag]).standard_normal(frame.shape)
                    frame += (level * rms * draw).astype(frame.dtype)

    def _frames(self, ids: np.ndarray, fields: list[str]) -> dict[str, np.ndarray]:
        """`{field: [B, window_length, ...]}` (static: `[B, ...]`) of the windows `ids`."""
        raise NotImplementedError

    def trajectories(self, fields: list[str]):
        """Yields, sim by sim, `{field: array [T, ...]}` (static: `[...]`) of the whole trajectory, verified; what
        the normalisation statistics read, through the same files (or memory) as the batches."""
        for s in self.sims:
            yield {f: self._sim(s).read(f) for f in fields}


SOURCES: Registry[type[TrajectorySource]] = Registry('window source')  # by `dataset.mode`


@SOURCES.register('memory')
class MemorySource(TrajectorySource):
    """All frames held in memory; each sim is read and verified the first time a batch needs it, so the first batch
    does not wait for the whole cache."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        scenario = self.cache.scenario
        fields = sorted(set(self.layout.inputs) | set(self.layout.outputs))
        self._arrays = {f: np.empty((len(self.sims), *scenario.field_shape(f).sizes), scenario.dtype) for f in fields}
        self._loaded = np.zeros(len(self.sims), bool)

    def _load(self, rows: np.ndarray):
        """Reads (verified) the sims at positions `rows` that are not in memory yet."""
        for r in np.unique(rows[~self._loaded[rows]]):
            with self.cache.open_sim(self.sims[r]) as sim:
                for f, a in self._arrays.items():
                    sim.read(f, out=a[r])
            self._loaded[r] = True

    def trajectories(self, fields):
        for r in range(len(self.sims)):
            self._load(np.array([r]))
            yield {f: self._arrays[f][r] for f in fields}

    def _frames(self, ids, fields):
        rows = self.row_of[ids]
        self._load(rows)
        time = self.start_of[ids][:, None] + np.arange(self.layout.window_length)
        return {
            f: self._arrays[f][rows] if f in self.layout.static else self._arrays[f][rows[:, None], time]
            for f in fields
        }


@SOURCES.register('lazy')
class LazySource(TrajectorySource):
    """Only the frames of each window, read (verified) from the files, straight into a preallocated batch array,
    visiting each file once per batch."""

    def _frames(self, ids, fields):
        lay, frames = self.layout, {}
        sims, starts = self.sim_of[ids], self.start_of[ids]
        for j in np.argsort(sims, kind='stable'):
            sim = self._sim(int(sims[j]))
            for f in fields:
                if f not in frames:
                    info = sim.fields[f]
                    rest = tuple(info.shape.get_size(d) for d in info.shape.names if d != 'time')
                    frames[f] = np.empty(
                        (len(sims), *(() if f in lay.static else (lay.window_length,)), *rest), info.dtype
                    )
                if f in lay.static:
                    frames[f][j] = self._static_array(int(sims[j]), f)
                else:
                    sim.read(f, int(starts[j]), int(starts[j]) + lay.window_length, out=frames[f][j])
        return frames

    def _static_array(self, sim, field):
        key = (sim, field)
        if key not in self._static:
            self._static[key] = self._sim(sim).read(field)
        return self._static[key]


def assemble(frames: dict[str, np.ndarray], lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Packs window frames `{field: [B, L, ...]}` (static `[B, ...]`) into initial state and targets."""
    n_in = lay.n_input
    inputs = {
        f: (np.repeat(frames[f][:, None], n_in, axis=1) if f in lay.static else frames[f][:, :n_in]) for f in lay.inputs
    }
    initial = pack(inputs, lay.inputs, lay)
    if n_in == 1:
        initial = initial[:, 0]
    targets = pack({f: frames[f][:, n_in:] for f in lay.outputs}, lay.outputs, lay)
    return initial, targets


class WindowSource:
    """Ready-made windows (e.g. model- or solver-generated samples) given as packed PhiML tensors.

    Args:
        initial_state: `Tensor (windowᵇ, [historyᶜ], *spatialˢ, channelsᶜ)` with the dataset's input channels.
        targets: `Tensor (windowᵇ, timeᵇ, *spatialˢ, channelsᶜ)` with the dataset's output channels.
    """

    def __init__(self, initial_state: Tensor, targets: Tensor, initial_order, target_order):
        self.initial = initial_state.numpy(initial_order)
        self.targets = targets.numpy(target_order)
        if self.initial.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"Generated samples: initial_state has {self.initial.shape[0]} windows but targets has {self.targets.shape[0]}"
            )
        self.sim_of = np.full(len(self.initial), -1, dtype=np.int64)
        self.start_of = np.full(len(self.initial), -1, dtype=np.int64)

    def __len__(self):
        return len(self.initial)

    def gather(self, ids):
        return self.initial[ids], self.targets[ids]

    def close(self):
        pass
