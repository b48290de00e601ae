"""PhiMLDataset: windows, coverage, determinism, resume, shards, splits, memory limit, augmentation, normalisation."""

import hashlib
import json

import numpy as np
import pytest
from phiml import math

from conftest import arrays, run_python
from phiml_data import Burgers2D, DataManager, PhiMLDataset, SmokePlume, augmentation, split_sims
from phiml_data.dataset import record_split
from phiml_data.normalization import denormalize, normalize


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


def test_every_window_exactly_once_and_last_partial_batch(burgers_dm):
    ds = PhiMLDataset(burgers_dm, n_targets=3, hop=2, normalize=False)
    assert len(ds) == 8 * len(range(0, 13 - 4 + 1, 2))
    ids = all_ids(ds, batch_size=7)
    assert sorted(ids.tolist()) == list(range(len(ds)))
    sizes = [b['targets'].shape.get_size('batch') for b in ds.iterate_batches(7)]
    assert sizes[-1] == len(ds) % 7 and len(sizes) == ds.n_batches(7)
    dropped = [b['targets'].shape.get_size('batch') for b in ds.iterate_batches(7, drop_last=True)]
    assert set(dropped) == {7} and len(dropped) == len(ds) // 7


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
    fields = ds.to_fields(b['targets'])
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


def test_resume_mid_epoch_gives_the_identical_remaining_stream(burgers_dm):
    ds = PhiMLDataset(burgers_dm, n_targets=2, augment=True)
    full = list(ds.iterate_batches(6, epoch=1))
    seen = []
    for b in ds.iterate_batches(6, epoch=1):
        seen.append(b)
        if len(seen) == 4:
            break
    state = {'epoch': seen[-1]['epoch'], 'start': seen[-1]['position']}
    rest = list(ds.iterate_batches(6, **state))
    assert len(seen) + len(rest) == len(full)
    assert len(rest) == len(full) - 4
    for a, b in zip(full[4:], rest):
        np.testing.assert_array_equal(arrays(a['targets']), arrays(b['targets']))
        np.testing.assert_array_equal(arrays(a['window_ids']), arrays(b['window_ids']))


def test_shards_are_disjoint_equal_and_cover_the_epoch_but_the_remainder(burgers_dm):
    n = len(PhiMLDataset(burgers_dm, n_targets=2, normalize=False))
    for world in (3, 5):
        shards = [
            all_ids(PhiMLDataset(burgers_dm, n_targets=2, normalize=False, shard=(r, world)), batch_size=4, epoch=5)
            for r in range(world)
        ]
        joined = np.concatenate(shards)
        assert len(joined) == len(set(joined.tolist())) == n // world * world  # the remainder waits for another epoch
        assert {len(s) for s in shards} == {n // world}  # equal steps on every rank
    whole = all_ids(PhiMLDataset(burgers_dm, n_targets=2, normalize=False), batch_size=4, epoch=5)
    assert sorted(whole.tolist()) == list(range(n))
    with pytest.raises(ValueError, match=r'rank must be in 0..2'):
        PhiMLDataset(burgers_dm, shard=(3, 3))


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


def test_normalisation_round_trip_and_vector_scale(burgers_dm):
    ds = PhiMLDataset(burgers_dm, n_targets=2)
    stats = ds.stats['velocity']
    assert stats['offset'] == 0.0 and stats['scale'] > 0  # vectors: no shift, one scale for all components
    raw = PhiMLDataset(burgers_dm, n_targets=2, normalize=False)
    b_raw, b = next(raw.iterate_batches(4)), next(ds.iterate_batches(4))
    np.testing.assert_allclose(arrays(ds.denormalize(b['targets'])), arrays(b_raw['targets']), rtol=1e-5, atol=1e-6)
    t = b_raw['initial_state']
    np.testing.assert_allclose(arrays(denormalize(normalize(t, ds.stats), ds.stats)), arrays(t), rtol=1e-6, atol=1e-6)
    all_v = np.stack([arrays(burgers_dm.load_phiml_cache(s)['velocity']) for s in ds.sims])
    assert stats['scale'] == pytest.approx(np.sqrt(np.mean(all_v.astype(np.float64) ** 2)), rel=1e-6)
    stats_files = list(burgers_dm.directory.glob('stats-*.json'))
    assert stats_files and burgers_dm.key in stats_files[0].read_text()


def test_scalar_fields_are_shifted_by_their_mean(tmp_path):
    dm = DataManager(tmp_path, SmokePlume(resolution=16, steps=3))
    dm.generate(1, progress=False)
    ds = PhiMLDataset(dm, n_targets=1)
    density = arrays(dm.load_phiml_cache(0)['density']).astype(np.float64)
    assert ds.stats['density']['offset'] == pytest.approx(density.mean()) and ds.stats['density'][
        'scale'
    ] == pytest.approx(density.std())


@pytest.mark.parametrize(
    'swap,flips,shift',
    [
        (False, ('x',), 0),
        (False, ('y',), 0),
        (True, (), 0),
        (True, ('x',), 0),
        (True, ('x', 'y'), 0),
        (False, (), 5),
        (True, ('y',), 3),
    ],
)
def test_augmented_initial_state_stepped_by_the_pde_equals_augmented_target(burgers_dm, swap, flips, shift):
    scenario = burgers_dm.scenario
    ds = PhiMLDataset(burgers_dm, n_targets=1, normalize=False)
    b = next(ds.iterate_batches(4, epoch=0))
    t = augmentation.Transform(swap, flips, (('x', shift), ('y', 2 * shift)) if shift else ())
    init = augmentation.apply(arrays(b['initial_state']), ds.input_channels, ('x', 'y'), [t] * 4)
    target = augmentation.apply(arrays(b['targets']), ds.target_channels, ('x', 'y'), [t] * 4)
    init_t = math.tensor(init, b['initial_state'].shape)
    stepped = scenario.step({'velocity': ds.to_fields(init_t)['velocity']})['velocity'].values
    np.testing.assert_allclose(stepped.numpy('batch,x,y,vector'), target[:, 0], atol=2e-5)
    assert not np.allclose(init, arrays(b['initial_state']))  # the transform did something


def test_flipped_smoke_state_stepped_by_the_solver_equals_flipped_target(tmp_path):
    from phiml_data.scenarios import field_values

    dm = DataManager(tmp_path, SmokePlume(resolution=16, steps=6))
    dm.generate(2, progress=False)
    ds = PhiMLDataset(dm, n_targets=1, normalize=False, augment=False)
    b = next(ds.iterate_batches(len(ds)))
    flip = [augmentation.Transform(False, ('x',), ())] * len(ds)
    init = augmentation.apply(arrays(b['initial_state']), ds.input_channels, ('x', 'y'), flip, ('velocity',))
    target = augmentation.apply(arrays(b['targets']), ds.target_channels, ('x', 'y'), flip, ('velocity',))
    stepped = dm.scenario.step(ds.to_fields(math.tensor(init, b['initial_state'].shape)))
    velocity = field_values(stepped['velocity']).numpy('batch,x,y,vector')  # x-faces: i -> n - i, not n - 1 - i
    np.testing.assert_allclose(velocity, target[:, 0, ..., :2], atol=1e-4)  # the pressure solve's tolerance: 1e-5
    np.testing.assert_allclose(field_values(stepped['density']).numpy('batch,x,y'), target[:, 0, ..., 2], atol=1e-5)
    assert np.abs(target[:, 0, ..., :2]).max() > 0.1


def test_symmetries_follow_scenario_and_boundaries(burgers_dm):
    assert augmentation.Symmetries.of(burgers_dm.scenario) == augmentation.Symmetries(('x', 'y'), True, ('x', 'y'))
    smoke = augmentation.Symmetries(('x',), False, (), staggered=('velocity',))
    assert augmentation.Symmetries.of(SmokePlume(resolution=16)) == smoke
    assert augmentation.Symmetries.of(Burgers2D(resolution=(16, 32))).swap is False


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


_RSS_CHILD = """
import sys, resource
from phiml_data import DataManager, Burgers2D, PhiMLDataset
def rss_mib(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
dm = DataManager(sys.argv[1], Burgers2D(resolution=64, steps=100))
limit = int(sys.argv[2])
ds = PhiMLDataset(dm, n_targets=4, batch_size=16, memory_limit=limit, prefetch=1, normalize=False)
assert not ds.in_memory
# VmHWM is the peak so far; reset it so that only the epoch counts
open('/proc/self/clear_refs', 'w').write('5')
before = rss_mib('VmRSS:')
n = sum(b['targets'].shape.get_size('batch') for b in ds.iterate_batches())
print(ds.data_bytes() / 2**20, before, rss_mib('VmHWM:'), n, len(ds))
"""


@pytest.mark.slow
def test_lazy_epoch_stays_inside_the_memory_limit(tmp_path):
    dm = DataManager(tmp_path, Burgers2D(resolution=64, steps=100))
    rng = np.random.default_rng(0)
    template = math.zeros(math.batch(time=101), math.spatial(x=64, y=64), math.channel(vector='x,y'))
    for i in range(40):  # 40 sims x 101 frames x 64 x 64 x 2 float32 = 126 MiB
        dm.save_phiml_cache(
            i,
            {
                'velocity': template
                + math.tensor(rng.standard_normal(template.shape.sizes, dtype=np.float32), template.shape)
            },
        )
    limit = 24 * 2**20
    data_mib, before, peak, n, total = map(float, run_python(_RSS_CHILD, dm.directory.parent, limit).split())
    assert data_mib > 4 * limit / 2**20
    assert n == total
    assert peak - before < limit / 2**20 + 16, f"peak RSS {peak:.0f} MiB, before the epoch {before:.0f} MiB"


def test_augmentations_are_chosen_by_name(burgers_dm):
    from phiml_data.config import parse_run_config

    only_flips = PhiMLDataset(burgers_dm, n_targets=2, augment=('flip',), normalize=False)
    assert only_flips.symmetries == augmentation.Symmetries(flips=('x', 'y'), swap=False, shifts=())
    assert PhiMLDataset(burgers_dm, n_targets=2, augment=True, normalize=False).symmetries.shifts == ('x', 'y')
    with pytest.raises(ValueError, match=r"Unknown augmentation\(s\) \['rotate'\]; valid: \['flip', 'swap', 'shift'\]"):
        PhiMLDataset(burgers_dm, n_targets=2, augment=('rotate',))
    assert parse_run_config({'dataset': {'augment': ['flip', 'shift']}}).dataset.augment == ('flip', 'shift')
    assert parse_run_config({'dataset': {'augment': True}}).dataset.augment is True


def test_to_fields_of_unknown_or_incomplete_channels_names_the_channels(burgers_dm):
    ds = PhiMLDataset(burgers_dm, sims=[0], n_targets=2, normalize=False)
    targets = next(ds.iterate_batches(4))['targets']
    assert set(ds.to_fields(targets)) == {'velocity'}
    cases = {
        'incomplete': targets.channels[['velocity.x']],
        'unknown': math.rename_dims(targets, 'channels', math.channel(channels='a,b')),
        'no channels': targets.channels['velocity.x'],
    }
    for name, t in cases.items():
        with pytest.raises(
            ValueError, match=r"Expected a Tensor with a 'channels' dim .*\['velocity.x', 'velocity.y'\]"
        ):
            ds.to_fields(t)
