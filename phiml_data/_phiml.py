"""The PhiML internals this package relies on, in one place: PhiML 1.16.1 has no public equivalent for them.

`tests/test_phiml_adapter.py` pins the behaviour each function relies on (and that no other module reaches into a
private PhiML name), so an upgrade of the `phiml` pin that changes one of them fails there, not somewhere downstream.
"""

from __future__ import annotations

from phiml.math import Shape, Tensor


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


def rfft(x: Tensor, dims: Shape) -> Tensor:
    """The real-to-complex FFT of `x` over its dims `dims` (the last one keeps `n // 2 + 1` modes), on `x`'s own
    backend (NumPy, torch or JAX, differentiable where the backend is): PhiML 1.16.1's `math.fft` is complex only."""
    from phiml import math

    order = (*x.shape.without(dims).names, *dims.names)
    axes = tuple(range(len(order) - dims.rank, len(order)))
    native = _fft_module(x)[0](x.native(order), axes)
    last = dims.names[-1]
    modes = dims.with_dim_size(last, dims.get_size(last) // 2 + 1)
    return math.wrap(native, _shape_in(x.shape.without(dims), modes))


def irfft(k: Tensor, dims: Shape) -> Tensor:
    """The inverse of `rfft`: real values on `dims` (the sizes of the original grid) from their modes `k`."""
    from phiml import math

    names = dims.names
    order = (*k.shape.without(names).names, *names)
    axes = tuple(range(len(order) - dims.rank, len(order)))
    native = _fft_module(k)[1](k.native(order), axes, dims.sizes)
    return math.wrap(native, _shape_in(k.shape.without(names), dims))


def _shape_in(rest: Shape, dims: Shape) -> Shape:
    """`rest` then `dims`: the dim order of the native arrays `rfft` and `irfft` hand to the backend."""
    from phiml.math import concat_shapes

    return concat_shapes(rest, dims)


def _fft_module(x: Tensor):
    """`(rfftn(native, axes), irfftn(native, axes, sizes))` of `x`'s backend."""
    name = x.default_backend.name
    if name == 'torch':
        import torch

        return lambda a, axes: torch.fft.rfftn(a, dim=axes), lambda a, axes, s: torch.fft.irfftn(a, s=s, dim=axes)
    if name == 'jax':
        import jax.numpy as jnp

        return lambda a, axes: jnp.fft.rfftn(a, axes=axes), lambda a, axes, s: jnp.fft.irfftn(a, s=s, axes=axes)
    import numpy as np

    return lambda a, axes: np.fft.rfftn(a, axes=axes), lambda a, axes, s: np.fft.irfftn(a, s=s, axes=axes)


def scan(body, steps: int, x, collect: bool = False):
    """`body` applied `steps` times to `x`, as one loop of the backend when it compiles (JAX: `lax.scan`, so a compiled
    function holds the body once instead of `steps` copies), else a Python loop. PhiML 1.16.1's `math.iterate` always
    unrolls.

    Args:
        body: `x -> x_next` (or, with `collect`, `x -> (x_next, y)`), PhiML code; `x` a `Tensor` or a tuple of them,
            each keeping its shape.
        collect: Also return every step's `y` (a `Tensor` or tuple), stacked along a new dim `timeᵇ`.

    Returns:
        The final `x`, or with `collect` the final `x` and the stacked `y`.
    """
    from phiml import math

    stacked = lambda ys: math.stack(ys, math.batch('time'))
    if _leaves(x)[0].default_backend.name != 'jax':
        ys = []
        for _ in range(steps):
            x, y = body(x) if collect else (body(x), None)
            ys.append(y)
        if not collect:
            return x
        return x, tuple(stacked(list(p)) for p in zip(*ys)) if isinstance(ys[0], tuple) else stacked(ys)
    import jax

    shapes, y_info = [t.shape for t in _leaves(x)], {}
    as_x = lambda natives: _like(x, [math.wrap(n, s) for n, s in zip(natives, shapes)])

    def step(natives, _):
        result = body(as_x(natives))
        x_next, y = result if collect else (result, None)
        if y is not None:
            y_info.update(tuple=isinstance(y, tuple), shapes=[t.shape for t in _leaves(y)])
            y = tuple(t.native(t.shape.names) for t in _leaves(y))
        return tuple(t.native(s.names) for t, s in zip(_leaves(x_next), shapes)), y

    final, ys = jax.lax.scan(step, tuple(t.native(t.shape.names) for t in _leaves(x)), None, length=steps)
    if not collect:
        return as_x(final)
    ys = [math.wrap(n, math.concat_shapes(math.batch(time=steps), s)) for n, s in zip(ys, y_info['shapes'])]
    return as_x(final), tuple(ys) if y_info['tuple'] else ys[0]


def _leaves(x) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _like(template, tensors: list):
    """`tensors` as a tuple if `template` is one, else the single tensor."""
    return tuple(tensors) if isinstance(template, tuple) else tensors[0]
