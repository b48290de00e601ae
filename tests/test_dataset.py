"""PhiMLDataset: windows, coverage, determinism, resume, shards, splits, memory limit, augmentation, normalisation."""

import hashlib
import json

import numpy as np
import pytest
from phiml import math

from conftest import arrays, run_python
from phiml_data import Burgers2D, ConfigError, DataManager, PhiMLDataset, SmokePlume, split_sims
from phiml_data.config import parse_run_config
from phiml_data.splits import record_split


@pytest.fixture(scope='module', params=['h5', 'zarr'])
def burgers_dm(request, tmp_path_factory):
    """8 sims of 2D Burgers at 16x16, 12 steps, in each storage format with partial reads: the same tests for both."""
    if request.param == 'zarr':
        pytest.importorskip('zarr')
    dm = DataManager(tmp_path_factory.mktemp(request.param), Burgers2D(resolution=16, steps=12), request.param)
    dm.generate(8, progress=False)
    return dm


def all_ids(ds, **kw):
    return np.concatenate([arrays(b['window_ids']) for b in ds.iterate_batches(**kw)])


def test_window_contents_match_direct_slicing_of_the_cache(burgers_dm):
    for mode in ('memory', 'lazy'):
        ds = PhiMLDataset(burgers_dm, sims=[1, 4, 6], n_input=2, n_targets=3, normalize=False, mode=mode)
        b = next(ds.iterate_batches(5, epoch=3))
        assert b['initial_state'].shape.names == ('batch', 'history', 'x', 'y', 'channels')
        assert b['targets'].shape.names == ('batch', 'time', 'x', 'y', 'channels')
        assert b['targets'].shape.get_item_names('channels') == ('velocity.x', 'velocity.y')
        for j, (sim, start) in enumerate(zip(arrays(b['sim']), arrays(b['start']))):
            v = burgers_dm.load_phiml_cache(int(sim))['velocity']
            np.testing.assert_array_equal(
                b['targets'].batch[j].numpy('time,x,y,channels'), v.time[start + 2 : start + 5].numpy('time,x,y,vector')
            )
            np.testing.assert_array_equal(
                b['initial_state'].batch[j].numpy('history,x,y,channels'),
                v.time[start : start + 2].numpy('time,x,y,vector'),
            )
            assert ds.windows()[int(arrays(b['window_ids'])[j])] == (sim, start)


def test_static_fields_are_inputs_only(tmp_path):
    dm = DataManager(tmp_path, SmokePlume(resolution=16, steps=3))
    dm.generate(2, progress=False)
    ds = PhiMLDataset(dm, n_targets=2, normalize=False)
    b = next(ds.iterate_batches(2))
    assert b['initial_state'].shape.get_item_names('channels') == ('velocity.x', 'velocity.y', 'density', 'inflow')
    assert b['targets'].shape.get_item_names('channels') == ('velocity.x', 'velocity.y', 'density')
    (sim,) = {int(s) for s in arrays(b['sim'])[:1]}
    np.testing.assert_array_equal(
        b['initial_state'].batch[0].channels['inflow'].numpy('x,y'), arrays(dm.load_phiml_cache(sim)['inflow'])
    )
    fields = ds.layout.to_fields(b['targets'], ds.scenario)
    assert fields['velocity'].is_staggered and fields['density'].is_centered
    assert fields['density'].shape.get_size('time') == 2


def _stream_digest(ds, **kw):
    h = hashlib.sha256()
    for b in ds.iterate_batches(**kw):
        h.update(arrays(b['initial_state']).tobytes())
        h.update(arrays(b['targets']).tobytes())
        h.update(arrays(b['window_ids']).tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_order_and_augmentation_are_identical_in_another_process(burgers_dm):
    ds = PhiMLDataset(burgers_dm, n_targets=2, augment=True, seed=3)
    code = f"""
import sys
sys.path.insert(0, 'tests')
from test_dataset import _stream_digest
from phiml_data import DataManager, Burgers2D, PhiMLDataset
dm = DataManager({str(burgers_dm.directory.parent)!r}, Burgers2D(resolution=16, steps=12), {burgers_dm.format.name!r})
print(_stream_digest(PhiMLDataset(dm, n_targets=2, augment=True, seed=3, mode='lazy', prefetch=2), batch_size=5, epoch=2))
"""
    assert run_python(code).strip() == _stream_digest(ds, batch_size=5, epoch=2)
    assert _stream_digest(ds, batch_size=5, epoch=2) != _stream_digest(ds, batch_size=5, epoch=3)


def test_prefetched_batches_do_not_depend_on_the_consumers_backend(burgers_dm):
    from phiml_data.backends import backend_named

    expected = list(PhiMLDataset(burgers_dm, n_targets=2, prefetch=0).iterate_batches(8))
    with backend_named('torch'):  # a trainer holds torch's (process-wide) context while the prefetch thread works
        batches = list(PhiMLDataset(burgers_dm, n_targets=2, prefetch=2).iterate_batches(8))
    for got, want in zip(batches, expected, strict=True):
        for key in ('initial_state', 'targets'):
            assert got[key].backend.name == 'numpy'
            np.testing.assert_array_equal(arrays(got[key]), arrays(want[key]))


def test_split_is_by_simulation_deterministic_disjoint_and_recorded(burgers_dm):
    s = split_sims(range(8), (0.5, 0.25, 0.25), seed=1)
    assert s == split_sims(range(8), (0.5, 0.25, 0.25), seed=1) and s != split_sims(range(8), (0.5, 0.25, 0.25), seed=2)
    assert sorted(s['train'] + s['val'] + s['test']) == list(range(8)) and [
        len(s[k]) for k in ('train', 'val', 'test')
    ] == [4, 2, 2]
    recorded = json.loads(record_split(burgers_dm, s, (0.5, 0.25, 0.25), 1).read_text())
    assert recorded == {'fractions': [0.5, 0.25, 0.25], 'seed': 1, **s}
    train = PhiMLDataset(burgers_dm, s['train'], normalize=False)
    assert {sim for sim, _ in train.windows()} == set(s['train'])


def test_invalid_settings_list_what_is_valid(burgers_dm):
    with pytest.raises(
        ValueError, match=r'longer than the trajectories \(13 frames\); valid: n_input \+ n_targets <= 13'
    ):
        PhiMLDataset(burgers_dm, n_input=4, n_targets=10)
    with pytest.raises(ValueError, match=r"Unknown field\(s\) \['density'\]; scenario 'burgers2d' has \['velocity'\]"):
        PhiMLDataset(burgers_dm, fields=('density',))
    with pytest.raises(ValueError, match='Empty split'):
        PhiMLDataset(burgers_dm, sims=[])
    with pytest.raises(ValueError, match=r'Sims \[42\] are not cached'):
        PhiMLDataset(burgers_dm, sims=[1, 42])
    with pytest.raises(ValueError, match='n_targets must be >= 1'):
        PhiMLDataset(burgers_dm, n_targets=0)
    with pytest.raises(ValueError, match=r'valid: batch_size <= \d+'):
        PhiMLDataset(burgers_dm, mode='lazy', memory_limit=100_000, batch_size=64)


def test_lazy_memory_and_prefetch_give_identical_batches(burgers_dm):
    kw = dict(n_targets=3, augment=True, seed=1)
    a = _stream_digest(PhiMLDataset(burgers_dm, mode='memory', **kw), batch_size=8, epoch=0)
    b = _stream_digest(PhiMLDataset(burgers_dm, mode='lazy', **kw), batch_size=8, epoch=0)
    c = _stream_digest(PhiMLDataset(burgers_dm, mode='lazy', prefetch=3, **kw), batch_size=8, epoch=0)
    assert a == b == c


def test_generated_samples_are_mixed_by_count(burgers_dm):
    real = PhiMLDataset(burgers_dm, n_targets=2, normalize=False)
    b = next(real.iterate_batches(len(real)))
    generated = (
        math.rename_dims(b['initial_state'], 'batch', math.batch('window')) * 0 + 7,
        math.rename_dims(b['targets'], 'batch', math.batch('window')) * 0 + 7,
    )
    ds = PhiMLDataset(burgers_dm, n_targets=2, normalize=False, generated=generated, alpha=0.25)
    assert ds.n_generated() == round(0.25 * len(real) / 0.75)
    batches = list(ds.iterate_batches(16))
    sims = np.concatenate([arrays(x['sim']) for x in batches])
    assert (sims == -1).sum() == ds.n_generated() and len(sims) == len(real) + ds.n_generated()
    for x in batches:
        is_gen = arrays(x['sim']) == -1
        assert np.all(arrays(x['targets'])[is_gen] == 7) and not np.any(arrays(x['targets'])[~is_gen] == 7)
        assert x['targets'].shape.names == ('batch', 'time', 'x', 'y', 'channels')
    cached = PhiMLDataset(burgers_dm, sims=[0, 1], n_targets=2, normalize=False)
    mixed = PhiMLDataset(burgers_dm, sims=[2, 3], n_targets=2, normalize=False, generated=cached, alpha=0.5)
    assert mixed.n_generated() == len(mixed) and sum(1 for _ in mixed.iterate_batches(8)) == mixed.n_batches(8)
    with pytest.raises(ValueError, match=r'alpha must be in \[0, 1\)'):
        PhiMLDataset(burgers_dm, generated=generated, alpha=1.0)


def test_to_fields_of_unknown_or_incomplete_channels_names_the_channels(burgers_dm):
    ds = PhiMLDataset(burgers_dm, sims=[0], n_targets=2, normalize=False)
    targets = next(ds.iterate_batches(4))['targets']
    assert set(ds.layout.to_fields(targets, ds.scenario)) == {'velocity'}
    cases = {
        'incomplete': targets.channels[['velocity.x']],
        'unknown': math.rename_dims(targets, 'channels', math.channel(channels='a,b')),
        'no channels': targets.channels['velocity.x'],
    }
    for name, t in cases.items():
        with pytest.raises(
            ValueError, match=r"Expected a Tensor with a 'channels' dim .*\['velocity.x', 'velocity.y'\]"
        ):
            ds.layout.to_fields(t, ds.scenario)


def test_bad_counts_and_sizes_name_the_value(dm):
    ds = PhiMLDataset(dm, n_targets=2, normalize=False)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match=rf'batch_size must be an integer >= 1 .*got {bad!r}'):
            next(ds.iterate_batches(bad))
        with pytest.raises(ValueError, match='batch_size must be an integer >= 1'):
            ds.n_batches(bad)
    with pytest.raises(ValueError, match=r'integers >= 0, got -1'):
        dm.generate([-1], progress=False)
    with pytest.raises(ValueError, match=r'steps must be an integer >= 1, got -1'):
        Burgers2D(steps=-1)
    with pytest.raises(ConfigError, match=r'scenario.steps: must be an integer >= 1'):
        parse_run_config({'scenario': {'steps': -1}})
    with pytest.raises(
        ConfigError, match=r'training.epochs: a run trains, then evaluates its best checkpoint: need >= 1, got 0'
    ):
        parse_run_config({'training': {'epochs': 0}})
