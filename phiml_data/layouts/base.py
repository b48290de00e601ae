"""`BenchmarkLayout`: the interface every benchmark file layout implements, its registry, and shared checks."""

from __future__ import annotations

import numpy as np

from ..registry import Registry

LAYOUTS: Registry[type[BenchmarkLayout]] = Registry('benchmark layout')  # by `import --from`


def register(cls: type[BenchmarkLayout]) -> type[BenchmarkLayout]:
    """Class decorator: makes `cls` available as `import_benchmark(..., layout=cls.name)` and `import --from`."""
    return LAYOUTS.register()(cls)


def get_layout(name: str) -> BenchmarkLayout:
    """The registered layout `name`.

    Raises:
        ValueError: No layout has that name; lists the registered ones.
    """
    return LAYOUTS[LAYOUTS.check(name)]()


class BenchmarkLayout:
    """How a benchmark's HDF5 files store trajectories.

    Subclasses implement `describe` and may override `read`. A description is a dict:

    - `trajectories`, `frames`: counts; `dt`: the time step (float32 times rounded to the float32 value's shortest
      decimal, so `0.05` stays `0.05`), or None;
    - `coordinates`: `{dim: 1D array}` sample positions; `convention`: `{dim: 'cell centres' | 'points'}`, where
      `'points'` means samples on both ends of the domain; `resolution`, `bounds` follow from the two;
    - `fields`: `{our field: [their datasets]}` (several datasets: vector components);
      `varying`: `{dataset: (sample_varying, time_varying)}`;
    - `boundaries`: `{our field: {dim: (lower, upper)}}` in our boundary names, or None where the layout records none;
    - `parameters`: `{scenario attribute: value}` the file states (e.g. PDEBench's `Nu` as a viscosity);
    - `unwritten`: trajectories some of whose data were never written.
    """

    name: str = ''
    convention_note: str = ''  # which coordinate convention the benchmark uses, for messages and docs

    def describe(self, f, path, fields: dict | None) -> dict:
        raise NotImplementedError

    def read(self, f, description: dict, dataset: str, j: int) -> np.ndarray:
        """Trajectory `j` of `dataset` as float32 `[time, *space, (components)]` (a time-constant one `[*space, ...]`)."""
        sample_varying, _ = description['varying'][dataset]
        return np.asarray(f[dataset][j] if sample_varying else f[dataset][()], np.float32)


def float32_step(values) -> float:
    """The mean step of uniformly spaced float32 values, as the float32 value's shortest decimal (0.05, not 0.0500000007)."""
    single = np.asarray(values).dtype != np.float64
    values = np.asarray(values, np.float64)
    step = (values[-1] - values[0]) / (len(values) - 1)
    return shortest32(step) if single else float(step)


def shortest32(value) -> float:
    """`value` rounded to float32, as the shortest decimal that float32 value prints as (0.05, not 0.0500000007)."""
    return float(str(np.float32(value)))


MAX_COORDINATE_SAMPLES = 2**26  # more samples along one axis than any simulation grid (64 Mi): a damaged declaration


def read_coordinate(dataset, what: str) -> tuple[np.ndarray | None, list[str]]:
    """The values of a coordinate dataset (`[n]`, or `[trajectories, n]`), or `None` and the problem if it declares
    more samples than any grid has (refused before it is read: a damaged file must not allocate terabytes)."""
    if dataset.size > MAX_COORDINATE_SAMPLES * max(dataset.shape[0] if dataset.ndim == 2 else 1, 1):
        return None, [
            f"{what} declares {dataset.shape} samples; more than {MAX_COORDINATE_SAMPLES} per axis is no grid"
        ]
    return dataset[()], []


def axis_problems(what: str, values, count: int) -> list[str]:
    """Problems of a coordinate axis: not numeric, shorter than needed, or not uniformly increasing (float32 tolerance)."""
    values = np.asarray(values)
    if values.ndim != 1 or values.dtype.kind not in 'fiu' or len(values) < max(count, 2):
        return [f"{what}: expected at least {max(count, 2)} numbers, got {values.dtype} of shape {values.shape}"]
    values = values[:count].astype(np.float64)
    steps = np.diff(values)
    step = (values[-1] - values[0]) / (len(values) - 1)
    tolerance = 1e-4 * abs(step) + 8 * np.finfo(np.float32).eps * np.abs(values).max()
    if not np.isfinite(values).all() or step <= 0 or np.abs(steps - step).max() > tolerance:
        return [f"{what} is not uniformly increasing: steps from {steps.min():.6g} to {steps.max():.6g}"]
    return []


def grid_of(coordinates: dict, conventions: dict) -> tuple[dict, dict]:
    """`(resolution, bounds)` of sample positions: cell centres span half a cell beyond the first and last sample,
    points (both domain ends sampled) span exactly from the first to the last."""
    resolution, bounds = {}, {}
    for d, c in coordinates.items():
        c = np.asarray(c, np.float64)
        dx = (c[-1] - c[0]) / (len(c) - 1)
        half = dx / 2 if conventions[d] == 'cell centres' else 0.0
        resolution[d] = len(c)
        digits = 7 - int(np.floor(np.log10(c[-1] - c[0] + 2 * half)))  # float32 carries about 7 significant digits
        bounds[d] = [round(float(c[0] - half), digits) + 0.0, round(float(c[-1] + half), digits)]
    return resolution, bounds


def convention_of(values) -> str:
    """`'points'` if the samples sit on whole multiples of their spacing (0, dx, ..., as grids that include the domain's
    ends do), else `'cell centres'` (PDEBench's and our own convention: (i + 1/2) dx)."""
    values = np.asarray(values, np.float64)
    dx = (values[-1] - values[0]) / (len(values) - 1)
    offset = (values[0] / dx) % 1.0
    return 'points' if min(offset, 1 - offset) < 1e-3 else 'cell centres'


def shape_problems(datasets: dict, expected: dict) -> list[str]:
    """Datasets that are not numeric or whose shape is not the expected one."""
    problems = []
    for name, ds in datasets.items():
        if ds.dtype.kind not in 'fiu':
            problems.append(f"dataset '{name}' holds {ds.dtype} values; expected numbers")
        if tuple(ds.shape[: len(expected[name][0])]) != tuple(expected[name][0]):
            problems.append(
                f"dataset '{name}' has shape {ds.shape}; expected {list(expected[name][0])} {expected[name][1]}"
            )
    return problems


def unwritten(ds) -> list[int]:
    """Trajectories (first axis) of an HDF5 dataset some of whose data were never written (unallocated storage)."""
    import h5py

    n = ds.shape[0]
    if ds.chunks is None:
        contiguous = ds.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS
        return list(range(n)) if contiguous and ds.size and ds.id.get_offset() is None else []
    per_block = int(np.prod([-(-s // c) for s, c in zip(ds.shape[1:], ds.chunks[1:])]))
    counts = np.zeros(-(-n // ds.chunks[0]), np.int64)

    def visit(chunk):
        counts[chunk.chunk_offset[0] // ds.chunks[0]] += 1

    ds.id.chunk_iter(visit)
    return [j for j in range(n) if counts[j // ds.chunks[0]] < per_block]


def text(value) -> str:
    """An HDF5 attribute string (bytes or str) as `str`."""
    return value.decode() if isinstance(value, bytes) else str(value)
