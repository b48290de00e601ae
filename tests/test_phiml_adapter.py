"""`phiml_data._phiml`: the PhiML internals the package relies on, pinned; nothing else reaches into PhiML's privates."""

import re

from phiml.math import batch, channel, spatial

from conftest import ROOT
from phiml_data import _phiml


def test_shape_specs_round_trip_names_types_sizes_and_item_names():
    shape = batch(time=5) & spatial(x=16, y=8) & channel(vector='x,y')
    spec = _phiml.shape_to_spec(shape)
    assert spec == '(time:b=5,x:s=16,y:s=8,vector:c=(x,y))'  # the format stored in every cache file
    assert _phiml.shape_from_spec(spec) == shape and _phiml.shape_from_spec(spec).get_item_names('vector') == ('x', 'y')


def test_a_backend_is_looked_up_by_name_without_becoming_the_default():
    from phiml.backend import default_backend

    before = default_backend()
    torch = _phiml.get_backend('torch')
    assert torch.name == 'torch' and default_backend() is before


def test_the_jax_adam_step_counter_is_read_and_set():
    from phiml import nn

    jax = _phiml.get_backend('jax')
    with jax:
        optimizer = nn.adam(nn.mlp(2, 1, [4]), learning_rate=1e-3)
    assert _phiml.adam_step(optimizer) == 0
    _phiml.set_adam_step(optimizer, 3)
    assert _phiml.adam_step(optimizer) == 3


def test_no_other_module_uses_a_private_phiml_name():
    private = re.compile(r'phiml\.[\w.]*\._\w+|\._step_i\b')
    offenders = [
        f'{p.relative_to(ROOT)}:{n}'
        for p in (ROOT / 'phiml_data').rglob('*.py')
        if p.name != '_phiml.py'
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if private.search(line.split('#')[0]) and 'load_h5' not in line  # docs name PhiML's HDF5 reader
    ]
    assert not offenders, offenders


def test_real_ffts_and_the_backend_loop_give_numpys_values_on_every_backend():
    import numpy as np
    from phiml import math
    from phiml.math import batch, channel, spatial

    from phiml_data._phiml import irfft, rfft, scan
    from phiml_data.backends import backend_named

    values = np.random.default_rng(0).standard_normal((2, 8, 6, 2))
    for name in ('numpy', 'torch', 'jax'):
        b = backend_named(name)
        with b:
            u = math.tensor(values, batch('b'), spatial('x,y'), channel(vector='x,y'))
            k = rfft(u, u.shape.spatial)
            assert k.shape.get_size('y') == 4 and k.shape.get_size('x') == 8
            np.testing.assert_allclose(k.numpy('b,x,y,vector'), np.fft.rfftn(values, axes=(1, 2)), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(irfft(k, u.shape.spatial).numpy('b,x,y,vector'), values, atol=1e-5)
            final, frames = scan(lambda x: (x * 2, x + 1), 3, u, collect=True)
            assert final.default_backend == b and frames.shape.get_size('time') == 3
            np.testing.assert_allclose(frames.time[2].numpy('b,x,y,vector'), values * 4 + 1, rtol=1e-5)
