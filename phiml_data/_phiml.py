"""The PhiML internals this package relies on, in one place: PhiML 1.16.1 has no public equivalent for them.

`tests/test_phiml_adapter.py` pins the behaviour each function relies on (and that no other module reaches into a
private PhiML name), so an upgrade of the `phiml` pin that changes one of them fails there, not somewhere downstream.
"""

from __future__ import annotations

from phiml.math import Shape


def get_backend(name: str):
    """The PhiML backend `name` (`'torch'`, `'jax'`, `'numpy'`), initialised if needed, without making it the default."""
    from phiml.backend._backend import get_backend as lookup

    return lookup(name)


def shape_to_spec(shape: Shape) -> str:
    """PhiML's own text form of a shape (names, types, sizes, item names), the one its HDF5 reader parses, e.g.
    `(time:b=5,x:s=16,vector:c=(x))`."""
    from phiml.math._shape import to_spec_str

    return to_spec_str(shape)


def shape_from_spec(spec: str) -> Shape:
    """Inverse of `shape_to_spec`."""
    from phiml.math._shape import from_spec_str

    return from_spec_str(spec)


def adam_step(optimizer) -> int:
    """The step counter of a PhiML jax Adam optimizer (which PhiML 1.16.1 never advances itself)."""
    return optimizer._step_i


def set_adam_step(optimizer, step: int):
    """Sets the step counter of a PhiML jax Adam optimizer."""
    optimizer._step_i = step
