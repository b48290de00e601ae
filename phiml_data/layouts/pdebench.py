"""PDEBench's merged HDF5 files, as PDEBench's generator writes them (`Data_Merge.py`).

- Datasets `tensor` `[N, T, X, (Y)]` (one field) or `Vx`, `Vy`, `Vz`, `density`, `pressure` (CFD), all float32.
- `x-coordinate`, `y-coordinate`: float32 **cell centres** (`(i + 1/2) dx`); `t-coordinate`: float32, possibly one
  entry longer than the frames.
- Root attributes hold the PDE's parameters; Burgers files state `Nu`, and PDEBench's Burgers equation is
  `u_t + (u²/2)_x = (Nu/π) u_xx`, so the viscosity is `Nu / π`.
- The file name ends in `.hdf5`: PDEBench's own loaders read `.h5` files as the per-seed layout (one group per seed,
  `0000/data`, as `2D_diff-react` and the shallow-water files), which this layout refuses in one line.
- No boundary conditions are recorded; they are taken from the scenario.
"""

from __future__ import annotations

import math

from .base import (
    BenchmarkLayout,
    axis_problems,
    float32_step,
    grid_of,
    read_coordinate,
    register,
    shape_problems,
    unwritten,
)

_PARAMETERS = {'Nu': ('viscosity', lambda nu: nu / math.pi)}  # attribute: (scenario attribute, conversion)


@register
class PDEBench(BenchmarkLayout):
    name = 'pdebench'
    convention_note = 'PDEBench stores cell centres'

    def describe(self, f, path, fields: dict | None) -> dict:
        import h5py

        if fields is None and not any(isinstance(f.get(k), h5py.Dataset) for k in ('tensor', 'Vx', 'density')):
            seeds = [k for k in f if isinstance(f[k], h5py.Group) and 'data' in f[k]]
            if seeds:
                raise ValueError(
                    f"{path} is in PDEBench's per-seed layout (one group per seed such as '{seeds[0]}/data', as in "
                    f"2D_diff-react and the shallow-water files); only the merged layout (datasets [N, T, X, ...] with "
                    f"x-coordinate) is read"
                )
        fields = _as_lists(fields or _default_fields(f))
        missing = [d for names in fields.values() for d in names if not isinstance(f.get(d), h5py.Dataset)]
        if missing:
            raise ValueError(f"{path} has no dataset(s) {missing} (pdebench layout); pass fields={{ours: theirs}}")
        dims = [d for d in ('x', 'y', 'z') if f'{d}-coordinate' in f]
        read = {d: read_coordinate(f[f'{d}-coordinate'], f'{d} coordinate') for d in dims}
        t, problems = read_coordinate(f['t-coordinate'], 'time coordinate') if 't-coordinate' in f else (None, [])
        problems += [p for _, found in read.values() for p in found]
        if problems:
            raise ValueError(f"{path} (pdebench) is malformed:\n  " + '\n  '.join(problems))
        coords = {d: c for d, (c, _) in read.items()}
        datasets = {d: f[d] for names in fields.values() for d in names}
        first = next(iter(datasets.values()))
        leading = tuple(first.shape[:2])
        problems = [p for d, c in coords.items() for p in axis_problems(f'{d} coordinate', c, len(c))]
        if leading and leading[0] < 1:
            problems.append("the datasets hold 0 trajectories: nothing to import")
        if not coords:
            problems.append("no spatial coordinates (x-coordinate)")
        sizes = [len(c) for c in coords.values()]
        if len(leading) < 2:
            problems.append("the first dataset has fewer than 2 axes (expected [trajectory, time, space...])")
        else:
            problems += axis_problems('time coordinate', t, leading[1]) if t is not None else []
            problems += shape_problems(
                datasets, {k: ([*leading, *sizes], "(trajectories, frames, the coordinates' sizes)") for k in datasets}
            )
        if problems:
            raise ValueError(f"{path} (pdebench) is malformed:\n  " + '\n  '.join(problems))
        conventions = {d: 'cell centres' for d in coords}
        resolution, bounds = grid_of(coords, conventions)
        return {
            'trajectories': leading[0],
            'frames': leading[1],
            'dt': float32_step(t[: leading[1]]) if t is not None and leading[1] > 1 else None,
            'coordinates': coords,
            'convention': conventions,
            'resolution': resolution,
            'bounds': bounds,
            'fields': fields,
            'varying': {k: (True, True) for k in datasets},
            'boundaries': None,
            'parameters': {
                ours: (
                    convert(float(f.attrs[attr])),
                    f"the file's {attr}={float(f.attrs[attr]):g} (PDEBench: viscosity = Nu/π)",
                )
                for attr, (ours, convert) in _PARAMETERS.items()
                if attr in f.attrs
            },
            'unwritten': sorted(set().union(*(unwritten(ds) for ds in datasets.values()))),
        }


def _default_fields(f) -> dict:
    if 'tensor' in f:
        return {'velocity': 'tensor'}
    return {'velocity': [v for v in ('Vx', 'Vy', 'Vz') if v in f], **{k: k for k in ('density', 'pressure') if k in f}}


def _as_lists(fields: dict) -> dict:
    return {k: [v] if isinstance(v, str) else list(v) for k, v in fields.items()}
