"""Window sources for `PhiMLDataset`: where the frames of a window come from, as packed NumPy arrays.

A *packed* array puts all fields into one trailing channel axis whose item names are `field.component`
(`velocity.x`, `velocity.y`) or the field name for scalars (`density`). Sources return, for a list of window ids,
`initial [B, (n_input,) *spatial, C_in]` and `targets [B, n_targets, *spatial, C_out]`; the dataset wraps them as
PhiML tensors once per batch.

Lazy sources read through `DataManager.open_sim`, so every frame they serve is verified (identity on open, xxh3-64 checksum
per frame on first read), in any storage format.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from phiml.math import Tensor

from .manager import DataManager


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
    of holding frames is one subclass implementing `_frames`, added there.

    Args:
        manager: The cache.
        sims: Sim indices that this source covers.
        layout: Fields and window sizes.
        hop: Distance between consecutive window starts.
        max_open_files: At most this many files stay open (LRU).
    """

    def __init__(self, manager: DataManager, sims, layout: Layout, hop: int, max_open_files: int = 256):
        self.manager, self.layout = manager, layout
        self.sims = list(sims)
        self._files = OrderedDict()
        self._max_open = max_open_files
        frames = manager.scenario.frames  # every file is checked against the scenario's shapes when opened
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
            self._files[sim] = self.manager.open_sim(sim)
        return self._files[sim]

    def close(self):
        for f in self._files.values():
            f.close()
        self._files.clear()

    def gather(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Packed `initial [B, (n_input,) *spatial, C_in]` and `targets [B, n_targets, *spatial, C_out]`."""
        fields = sorted(set(self.layout.inputs) | set(self.layout.outputs))
        return assemble(self._frames(ids, fields), self.layout)

    def _frames(self, ids: np.ndarray, fields: list[str]) -> dict[str, np.ndarray]:
        """`{field: [B, window_length, ...]}` (static: `[B, ...]`) of the windows `ids`."""
        raise NotImplementedError

    def trajectories(self, fields: list[str]):
        """Yields, sim by sim, `{field: array [T, ...]}` (static: `[...]`) of the whole trajectory, verified; what
        the normalisation statistics read, through the same files (or memory) as the batches."""
        for s in self.sims:
            yield {f: self._sim(s).read(f) for f in fields}


class MemorySource(TrajectorySource):
    """All frames held in memory; each sim is read and verified the first time a batch needs it, so the first batch
    does not wait for the whole cache."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        scenario = self.manager.scenario
        fields = sorted(set(self.layout.inputs) | set(self.layout.outputs))
        self._arrays = {f: np.empty((len(self.sims), *scenario.field_shape(f).sizes), scenario.dtype) for f in fields}
        self._loaded = np.zeros(len(self.sims), bool)

    def _load(self, rows: np.ndarray):
        """Reads (verified) the sims at positions `rows` that are not in memory yet."""
        for r in np.unique(rows[~self._loaded[rows]]):
            with self.manager.open_sim(self.sims[r]) as sim:
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


SOURCES: dict[str, type[TrajectorySource]] = {'memory': MemorySource, 'lazy': LazySource}  # by `dataset.mode`


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
