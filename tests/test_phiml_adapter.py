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
