"""The Well's HDF5 files (`the-well` package, format as its `WellDataset` reads it).

- Root attributes `dataset_name`, `grid_type` (only `'cartesian'` is read), `n_spatial_dims`, `n_trajectories`,
  `simulation_parameters` (names of further root attributes holding the PDE's parameters).
- `dimensions`: attribute `spatial_dims`; datasets `time` `[T]` (or `[N, T]` when `sample_varying`) and one
  coordinate per spatial dim. The Well stores sample positions without saying which convention; each axis is read as
  **points** (both domain ends sampled, `x = i dx`, as The Well's reference writer does) when its samples sit on whole
  multiples of the spacing, else as **cell centres** (`(i + 1/2) dx`).
- `t0_fields` (scalars), `t1_fields` (vectors, components on the last axis), `t2_fields` (tensors, not imported);
  each dataset has `sample_varying`, `time_varying` and `dim_varying` attributes, and its shape is
  `[N if sample_varying] + [T if time_varying] + [size, or 1 along a dim it does not vary along] + [D] * order`; a
  field constant along a dim is expanded along it when read, as The Well's reader does.
- `boundary_conditions`: one group per boundary with `bc_type` (`PERIODIC`, `WALL`, `OPEN`), `associated_dims`,
  `associated_fields` (empty: every field) and a `mask` over the coordinates that marks the boundary's samples, so one
  group can cover one side of an axis (`x0_wall`) or both; a side counts only where the mask covers all of it (a mask
  touching part of an edge leaves that side open, as in The Well's reader), and a side no group covers is open. A
  `WALL` means zero flux for a scalar field (`zero-gradient`) and no flow through it for a vector field (`zero`).
- A periodic axis sampled at `i L / N` is a grid of cell centres shifted by half a cell (exact on a periodic axis):
  it is read as cell centres.
"""

from __future__ import annotations

import numpy as np

from .base import (
    BenchmarkLayout,
    axis_problems,
    convention_of,
    float32_step,
    grid_of,
    read_coordinate,
    register,
    shape_problems,
    text,
    unwritten,
)

KINDS = {  # The Well's bc_type -> our boundary, for (scalar, vector) fields
    'PERIODIC': ('periodic', 'periodic'),
    'WALL': ('zero-gradient', 'zero'),
    'OPEN': ('zero-gradient', 'zero-gradient'),
}


@register
class TheWell(BenchmarkLayout):
    name = 'the_well'
    convention_note = 'The Well: points or cell centres, detected per axis'

    def read(self, f, description: dict, dataset: str, j: int) -> np.ndarray:
        """`BenchmarkLayout.read`, expanded along the dims the dataset is constant along (as WellDataset does)."""
        values = super().read(f, description, dataset, j)
        constant = description['constant_along'].get(dataset, [])
        if not constant:
            return values
        first = int(description['varying'][dataset][1])  # the spatial axes follow the time axis, if any
        sizes = list(description['resolution'].values())
        shape = list(values.shape)
        for i in constant:
            shape[first + i] = sizes[i]
        return np.ascontiguousarray(np.broadcast_to(values, shape))

    def describe(self, f, path, fields: dict | None) -> dict:
        import h5py

        fields = {k: [v] if isinstance(v, str) else list(v) for k, v in (fields or _default_fields(f)).items()}
        missing = [d for names in fields.values() for d in names if not isinstance(f.get(d), h5py.Dataset)]
        if missing:
            raise ValueError(f"{path} has no dataset(s) {missing} (the_well layout); pass fields={{ours: theirs}}")
        dims = [text(d) for d in f['dimensions'].attrs['spatial_dims']]
        n = int(f.attrs['n_trajectories'])
        problems = (
            []
            if text(f.attrs.get('grid_type', 'cartesian')) == 'cartesian'
            else [f"grid_type {text(f.attrs['grid_type'])!r}; only 'cartesian' grids can be imported"]
        )
        if n < 1:
            problems.append(f"n_trajectories is {n}: the file holds no trajectory to import")
        coords = {}
        for d in dims:
            c, found = read_coordinate(f['dimensions'][d], f'{d} coordinate')
            problems += found
            if c is None:
                continue
            if c.ndim == 2:  # sample_varying coordinates: importable only if the same for every trajectory
                problems += [] if (c == c[:1]).all() else [f"{d} coordinate differs between trajectories"]
                c = c[0]
            coords[d] = c
            problems += axis_problems(f'{d} coordinate', c, len(c))
        time, found = read_coordinate(f['dimensions']['time'], 'time coordinate')
        if time is None:
            raise ValueError(f"{path} (the_well) is malformed:\n  " + '\n  '.join(problems + found))
        time = np.atleast_2d(time)
        frames = time.shape[-1]
        for j, row in enumerate(time):  # every trajectory's time (time per trajectory: [N, T])
            where = f'time coordinate of trajectory {j}' if len(time) > 1 else 'time coordinate'
            problems += axis_problems(where, row, frames)
        steps = {float32_step(row) for row in time} if frames > 1 and not problems else {None}
        if len(steps) > 1:
            problems.append(f"the time step differs between trajectories: {sorted(steps)}")
        datasets = {d: f[d] for names in fields.values() for d in names}
        varying, expected, constant_along = {}, {}, {}
        for name, ds in datasets.items():
            attrs = ds.attrs
            sv, tv = bool(attrs.get('sample_varying', True)), bool(attrs.get('time_varying', True))
            along = [bool(v) for v in attrs.get('dim_varying', [True] * len(dims))]
            varying[name] = (sv, tv)
            constant_along[name] = [i for i, v in enumerate(along) if not v]
            expected[name] = (
                [n] * sv + [frames] * tv + [len(c) if v else 1 for c, v in zip(coords.values(), along)],
                "([trajectories if sample_varying] + [time if time_varying] + the coordinates' sizes, 1 where constant)",
            )
        problems += shape_problems(datasets, expected)
        if problems:
            raise ValueError(f"{path} (the_well) is malformed:\n  " + '\n  '.join(problems))
        boundaries = {ours: _boundaries(f, dims, theirs) for ours, theirs in fields.items()}
        periodic = {d for d in dims if all(b[d] == ('periodic', 'periodic') for b in boundaries.values())}
        conventions = {d: 'cell centres' if d in periodic else convention_of(c) for d, c in coords.items()}
        resolution, bounds = grid_of(coords, conventions)
        sample_varying = [ds for name, ds in datasets.items() if varying[name][0]]
        return {
            'trajectories': n,
            'frames': frames,
            'dt': steps.pop(),
            'coordinates': coords,
            'convention': conventions,
            'resolution': resolution,
            'bounds': bounds,
            'fields': fields,
            'varying': varying,
            'constant_along': constant_along,
            'boundaries': boundaries,
            'parameters': {},
            'unwritten': sorted(set().union(*(unwritten(ds) for ds in sample_varying))),
        }


def _default_fields(f) -> dict:
    """Every scalar (`t0_fields`) and vector (`t1_fields`) field under its own name."""
    return {
        text(k): f'{group}/{text(k)}' for group in ('t0_fields', 't1_fields') for k in f[group].attrs['field_names']
    }


def _boundaries(f, dims: list[str], datasets: list[str]) -> dict:
    """`{dim: (lower, upper)}` for a field (its datasets' names), from the groups that apply to it and their masks;
    `WALL` by the field's kind (`KINDS`: t1 fields are vectors)."""
    names = {d.rsplit('/', 1)[-1] for d in datasets}
    vector = any('t1_fields' in d for d in datasets) or len(datasets) > 1
    sides = {d: ['zero-gradient', 'zero-gradient'] for d in dims}
    for group in f['boundary_conditions'].values():
        applies = [text(a) for a in group.attrs.get('associated_fields', [])]
        if applies and not names & set(applies):
            continue
        kind = text(group.attrs['bc_type']).upper()
        kind = KINDS[kind][vector] if kind in KINDS else kind.lower()
        associated = [text(d) for d in np.atleast_1d(group.attrs['associated_dims'])]
        mask = np.asarray(group['mask'][()], bool) if 'mask' in group else None
        for axis, d in enumerate(associated):
            for side, index in ((0, 0), (1, -1)):
                if mask is None or np.take(mask, index, axis=axis).all():  # the whole side, as WellDataset reads it
                    sides[d][side] = kind
    return {d: tuple(v) for d, v in sides.items()}
