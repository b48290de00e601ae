"""Symmetry augmentation (`phiml_data.augmentation`): derived from the scenario, exact under the PDE, chosen by name."""

import numpy as np
import pytest
from phiml import math

from conftest import arrays
from phiml_data import Burgers2D, DataManager, PhiMLDataset, SmokePlume, augmentation


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
    t = augmentation.Transform.of(swap=swap, flip=flips, shift=(('x', shift), ('y', 2 * shift)) if shift else ())
    init = augmentation.apply(arrays(b['initial_state']), ds.input_channels, ('x', 'y'), [t] * 4)
    target = augmentation.apply(arrays(b['targets']), ds.target_channels, ('x', 'y'), [t] * 4)
    init_t = math.tensor(init, b['initial_state'].shape)
    stepped = scenario.step({'velocity': ds.layout.to_fields(init_t, ds.scenario)['velocity']})['velocity'].values
    np.testing.assert_allclose(stepped.numpy('batch,x,y,vector'), target[:, 0], atol=2e-5)
    assert not np.allclose(init, arrays(b['initial_state']))  # the transform did something


def test_flipped_smoke_state_stepped_by_the_solver_equals_flipped_target(tmp_path):
    from phiml_data.scenarios import field_values

    dm = DataManager(tmp_path, SmokePlume(resolution=16, steps=6))
    dm.generate(2, progress=False)
    ds = PhiMLDataset(dm, n_targets=1, normalize=False, augment=False)
    b = next(ds.iterate_batches(len(ds)))
    flip = [augmentation.Transform.of(flip=('x',))] * len(ds)
    init = augmentation.apply(arrays(b['initial_state']), ds.input_channels, ('x', 'y'), flip, ('velocity',))
    target = augmentation.apply(arrays(b['targets']), ds.target_channels, ('x', 'y'), flip, ('velocity',))
    stepped = dm.scenario.step(ds.layout.to_fields(math.tensor(init, b['initial_state'].shape), ds.scenario))
    velocity = field_values(stepped['velocity']).numpy('batch,x,y,vector')  # x-faces: i -> n - i, not n - 1 - i
    np.testing.assert_allclose(velocity, target[:, 0, ..., :2], atol=1e-4)  # the pressure solve's tolerance: 1e-5
    np.testing.assert_allclose(field_values(stepped['density']).numpy('batch,x,y'), target[:, 0, ..., 2], atol=1e-5)
    assert np.abs(target[:, 0, ..., :2]).max() > 0.1


def test_symmetries_follow_scenario_and_boundaries(burgers_dm):
    everything = {'swap': ('x', 'y'), 'flip': ('x', 'y'), 'shift': ('x', 'y')}
    assert augmentation.Symmetries.of(burgers_dm.scenario) == augmentation.Symmetries(everything)
    smoke = augmentation.Symmetries({'flip': ('x',)}, staggered=('velocity',))
    assert augmentation.Symmetries.of(SmokePlume(resolution=16)) == smoke
    assert 'swap' not in augmentation.Symmetries.of(Burgers2D(resolution=(16, 32))).allowed


def test_augmentations_are_chosen_by_name(burgers_dm):
    from phiml_data.config import parse_run_config

    only_flips = PhiMLDataset(burgers_dm, n_targets=2, augment=('flip',), normalize=False)
    assert only_flips.symmetries == augmentation.Symmetries({'flip': ('x', 'y')})
    assert PhiMLDataset(burgers_dm, n_targets=2, augment=True, normalize=False).symmetries.allowed['shift'] == (
        'x',
        'y',
    )
    with pytest.raises(ValueError, match=r"unknown augmentation 'rotate'; valid: \[.*'flip'"):
        PhiMLDataset(burgers_dm, n_targets=2, augment=('rotate',))
    assert parse_run_config({'dataset': {'augment': ['flip', 'shift']}}).dataset.augment == ('flip', 'shift')
    assert parse_run_config({'dataset': {'augment': True}}).dataset.augment is True


def test_a_registered_augmentation_is_chosen_by_name_and_applied_after_the_built_in_ones(burgers_dm):
    class Negate(augmentation.Augmentation):  # u -> -u is a symmetry of no Burgers flow; here only to see it applied
        name = 'test_negate'

        def allowed(self, scenario):
            return (True,)

        def draw(self, rng, allowed, resolution):
            return True

        def apply(self, part, channels, axis, value, staggered):
            return -part

    with augmentation.AUGMENTATIONS.temporarily('test_negate', Negate()):
        plain = PhiMLDataset(burgers_dm, n_targets=1, normalize=False, augment=False)
        negated = PhiMLDataset(burgers_dm, n_targets=1, normalize=False, augment=('test_negate',))
        a, b = next(plain.iterate_batches(4)), next(negated.iterate_batches(4))
        np.testing.assert_array_equal(arrays(b['targets']), -arrays(a['targets']))
