"""Between PhiFlow fields and stored values: the exact face layout of staggered grids, canonical dim order, and
rebuilding a `Field` from cached values and a sim's metadata."""

from __future__ import annotations

from phi.field import CenteredGrid, Field, StaggeredGrid
from phi.geom import Box
from phiml import math
from phiml.math import Tensor, channel, dual

from .base import BOUNDARIES, STAGGERED_BOUNDARIES, FieldSpec


def field_values(f: Field) -> Tensor:
    """The stored values of a field in canonical dim order `(batch..., spatial..., channel...)`: a centred grid's
    values, a staggered grid's face layout (`staggered_faces`)."""
    return canonical(staggered_faces(f) if f.is_staggered else f.values)


def staggered_faces(f: Field) -> Tensor:
    """The face values of a staggered grid on the cell grid, exactly: `Tensor (..., xˢ, [yˢ], vectorᶜ=x[,y])`.

    Component `d` at cell index `i` along `d` holds the value on the lower `d`-face of cell `i` (at `i·dx` along `d`;
    at the cell centre along the other axes). Periodic grids store exactly these faces; with `zero` boundaries index
    0 along `d` holds the wall face, which the boundary condition keeps at 0, and the upper wall face is left out
    (also 0). `to_field` inverts this bit for bit. Networks see these face values as they are.

    Example:
        >>> from phi.field import StaggeredGrid
        >>> from phiml.math import extrapolation
        >>> v = StaggeredGrid((1, 2), extrapolation.ZERO, x=4, y=3)
        >>> faces = staggered_faces(v)
        >>> faces.vector['x'].numpy('x,y')[:, 0].tolist(), faces.vector['y'].numpy('x,y')[0].tolist()
        ([0.0, 1.0, 1.0, 1.0], [0.0, 2.0, 2.0])
    """
    components = f.values.shape.dual.item_names[0]
    faces = []
    for d in components:
        values = f.values[{'~vector': d}]
        missing = f.resolution.get_size(d) - values.shape.get_size(d)
        if missing not in (0, 1):
            raise ValueError(
                f"Staggered grid with boundary {f.boundary} has {values.shape.get_size(d)} {d}-faces per row for "
                f"{f.resolution.get_size(d)} cells; only boundaries {STAGGERED_BOUNDARIES} can be stored"
            )
        faces.append(pad_zeros(values, d, missing, 0))  # the lower wall face, 0 by the boundary condition
    return math.stack(faces, channel(vector=','.join(components)))


def canonical(t: Tensor, dtype: str = None) -> Tensor:
    """Reorders `t` to `(batch..., spatial..., channel...)` so that its NumPy layout matches the cache layout; with
    `dtype` (e.g. `'float32'`) its values are cast to it."""
    order = t.shape.batch + t.shape.instance + t.shape.spatial + t.shape.channel
    values = t.numpy(order.names)
    return math.tensor(values if dtype is None else values.astype(dtype), order, convert=False)  # stays NumPy


def to_field(values: Tensor, metadata: dict, name: str) -> Field:
    """Rebuilds the PhiFlow `Field` of cached field `name` from its values and the sim's metadata.

    Args:
        values: `Tensor (..., xˢ, [yˢ], [vectorᶜ])` as cached; extra batch dims (`time`, `batch`) are kept.
        metadata: The sim's metadata, as returned with `DataManager.load_phiml_cache`.
        name: The field name, a key of `metadata['fields']`.

    Returns:
        `CenteredGrid`, or for staggered fields the `StaggeredGrid` whose faces `values` holds (`staggered_faces`);
        the wall slots of `zero` boundaries are not read, since the boundary condition fixes those faces at 0.
    """
    if name not in metadata['fields']:
        raise KeyError(f"No field '{name}' in metadata; available: {sorted(metadata['fields'])}")
    spec = FieldSpec(**metadata['fields'][name])
    boundary = BOUNDARIES[spec.boundary]
    bounds = Box(**{k: tuple(v) for k, v in metadata['bounds'].items()})
    if spec.grid != 'staggered':
        return CenteredGrid(values, boundary, bounds=bounds)
    components = values.shape.get_item_names('vector')
    wall = spec.boundary == 'zero'  # index 0 along each component's own axis is the wall face
    faces = [values.vector[d][{d: slice(1, None)}] if wall else values.vector[d] for d in components]
    faces = math.stack(faces, dual(vector=','.join(components)))
    return StaggeredGrid(faces, boundary, bounds=bounds, **metadata['resolution'])


def pad_zeros(t: Tensor, dim: str, lower: int, upper: int) -> Tensor:
    """`t` with `lower` / `upper` zero slices added along `dim`, on `t`'s own backend (PhiML's `math.pad` with a
    constant checks the constant through NumPy, which a step on torch must not do).

    Example:
        >>> from phiml.math import spatial
        >>> pad_zeros(math.ones(spatial(x=2)), 'x', 1, 0).numpy('x').tolist()
        [0.0, 1.0, 1.0]
    """
    zero = math.zeros_like(t[{dim: slice(0, 1)}])
    return math.concat([zero] * lower + [t] + [zero] * upper, dim) if lower or upper else t
