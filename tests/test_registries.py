"""Every registry (`phiml_data.registry.Registry`) refuses a second item under a taken name, and every registered item
meets its registry's contract: the tests below are parametrised by what is registered when they are collected, so a
new scenario, format, layout, augmentation, loss, architecture, window source, training backend or training mode is
tested the moment it is registered, and no test here lists names by hand."""

import dataclasses

import numpy as np
import pytest
from benchmark_files import LAYOUT_FIXTURES
from phiml import math

from phiml_data import DataManager, PhiMLDataset, simulate
from phiml_data.architectures import ARCHITECTURES
from phiml_data.augmentation import AUGMENTATIONS
from phiml_data.backends import TRAINING_BACKENDS
from phiml_data.config import ModelConfig
from phiml_data.formats import FORMATS
from phiml_data.layouts import LAYOUTS
from phiml_data.losses import LOSSES, LossContext, square_error
from phiml_data.registry import Registry
from phiml_data.scenarios import SCENARIOS, step_values

from phiml_data._windows import SOURCES  # isort: skip

REGISTRIES = {
    'scenarios': SCENARIOS,
    'formats': FORMATS,
    'layouts': LAYOUTS,
    'augmentations': AUGMENTATIONS,
    'losses': LOSSES,
    'architectures': ARCHITECTURES,
    'sources': SOURCES,
    'training backends': TRAINING_BACKENDS,
}
EXAMPLES = {name: s for cls in SCENARIOS.values() for name, s in cls.examples().items()}


def _registries():
    from phiml_data.modes import MODES

    return {**REGISTRIES, 'modes': MODES}


@pytest.mark.parametrize('name', sorted(_registries()))
def test_every_registry_refuses_a_taken_name_and_names_the_valid_ones(name):
    registry = _registries()[name]
    assert isinstance(registry, Registry) and len(registry) >= 1
    taken = next(iter(registry))
    with pytest.raises(ValueError, match=f"named '{taken}' is registered already"):
        registry.add(taken, registry[taken])
    assert registry[taken] is registry[taken]  # the first registration stays
    with pytest.raises(ValueError, match=rf"unknown {registry.kind} 'no such thing'; valid: \[.*'{taken}'"):
        registry.check('no such thing')


@pytest.mark.parametrize('example', sorted(EXAMPLES))
def test_every_scenario_is_cached_exactly_and_batched(example, tmp_path):
    scenario = EXAMPLES[example]
    dm = DataManager(tmp_path, scenario)
    assert dm.generate(2, progress=False) == [0, 1]
    for i, sim in enumerate(simulate(scenario, [0, 1])):
        loaded = dm.load_phiml_cache(i)
        for field, values in sim.items():
            assert loaded[field].shape == scenario.field_shape(field) == values.shape
            np.testing.assert_array_equal(loaded[field].numpy(values.shape.names), values.numpy(values.shape.names))
    batch = next(PhiMLDataset(dm, n_targets=2).iterate_batches(3))
    assert batch['targets'].shape.get_size('time') == 2 and batch['targets'].shape.get_size('batch') == 3


@pytest.mark.parametrize('name', list(FORMATS))
def test_every_format_writes_and_reads_back_every_frame(name, tmp_path):
    scenario = next(iter(EXAMPLES.values()))
    dm = DataManager(tmp_path, scenario, name, allow_pickle=FORMATS[name].needs_pickle)
    dm.generate(1, progress=False)
    expected = simulate(scenario, [0])[0]
    with dm.cache.open_sim(0) as sim:
        for field, values in expected.items():
            np.testing.assert_array_equal(sim.read(field), values.numpy(sim.fields[field].shape.names))


@pytest.mark.parametrize('name', list(LAYOUTS))
def test_every_layout_imports_its_fixture_exactly(name, tmp_path):
    if name not in LAYOUT_FIXTURES:
        pytest.fail(f"layout '{name}' has no fixture writer: add one to tests/benchmark_files.LAYOUT_FIXTURES")
    scenario, path, expected = LAYOUT_FIXTURES[name](tmp_path)  # expected: per trajectory {field: Tensor}
    from phiml_data.importers import import_benchmark

    dm = DataManager(tmp_path / 'cache', scenario)
    assert import_benchmark(dm, path, name) == list(range(len(expected)))
    for i, fields in enumerate(expected):
        loaded = dm.load_phiml_cache(i)
        for field, values in fields.items():
            order = values.shape.names
            np.testing.assert_array_equal(loaded[field].numpy(order), values.numpy(order))


def _augmentation_cases():
    """(augmentation, example scenario) pairs where the scenario allows the augmentation."""
    return [(a, e) for a in AUGMENTATIONS for e in sorted(EXAMPLES) if AUGMENTATIONS[a].allowed(EXAMPLES[e])]


@pytest.mark.parametrize('name', list(AUGMENTATIONS))
def test_every_augmentation_is_allowed_by_some_scenario(name):
    assert any(a == name for a, _ in _augmentation_cases()), f"no registered scenario allows '{name}'"


@pytest.mark.parametrize('name,example', _augmentation_cases())
def test_every_augmentation_commutes_with_the_solver_step(name, example, tmp_path):
    """The defining property of a symmetry: transforming a window, then stepping, equals stepping, then transforming."""
    scenario = dataclasses.replace(EXAMPLES[example], steps=1)
    dm = DataManager(tmp_path, scenario)
    dm.generate(2, progress=False)
    plain = PhiMLDataset(dm, n_targets=1, normalize=False, shuffle=False)
    augmented = plain.variant(augment=(name,))
    for epoch in range(3):  # draws differ per epoch; identity draws are allowed
        b = next(augmented.iterate_batches(2, epoch=epoch))
        fields = augmented.layout.unpack(b['initial_state'])
        with math.precision(64):
            stepped = step_values(scenario, fields)
        for field, values in augmented.layout.unpack(b['targets'].time[0]).items():
            expected = stepped[field].numpy(values.shape.names)
            np.testing.assert_allclose(values.numpy(values.shape.names), expected, atol=2e-4 * np.abs(expected).max())


@pytest.mark.parametrize('name', list(LOSSES))
def test_every_loss_is_zero_at_the_truth_positive_elsewhere_and_differentiable(name):
    from phiml_data.backends import backend_named

    with backend_named('torch'):
        shape = math.batch(batch=2, time=2) & math.spatial(x=8) & math.channel(channels='u,v')
        targets = math.random_normal(shape)
        context = LossContext(base_error=lambda: square_error(targets * 0.5, targets))
        assert float(LOSSES[name](targets, targets, context)) == pytest.approx(0, abs=1e-12)
        grad = math.gradient(lambda p: LOSSES[name](p, targets, context), 'p', get_output=False)(targets * 0.9)
        assert float(LOSSES[name](targets * 0.9, targets, context)) > 0 and float(math.sum(abs(grad), grad.shape)) > 0


def _slow_unless_torch(cases: list) -> list:
    """Cases on the default backend (torch) in the unit layer, the others (jax: compiling) in the slow layer."""
    slow = lambda c: (
        pytest.param(*c, marks=pytest.mark.slow) if isinstance(c, tuple) else pytest.param(c, marks=pytest.mark.slow)
    )
    return [c if 'torch' in (c if isinstance(c, tuple) else (c,)) else slow(c) for c in cases]


_MODEL = lambda name: ModelConfig(architecture=name, filters=4, layers=1, levels=2)
_ALLOWED = [(a, b) for a in ARCHITECTURES for b in TRAINING_BACKENDS if not ARCHITECTURES[a].refuse(_MODEL(a), b)]


@pytest.mark.parametrize('name,backend', _slow_unless_torch(_ALLOWED))  # refusals: test_trainer, test_architectures
def test_every_architecture_builds_on_every_backend_it_allows_and_keeps_the_grid(name, backend):
    from phiml_data.backends import backend_named
    from phiml_data.trainer import build_network

    model = _MODEL(name)
    pytest.importorskip(backend)
    with backend_named(backend):
        net = build_network(model, 3, 2, 2, periodic=True)
        x = math.random_normal(math.batch(batch=2), math.spatial(x=8, y=8), math.channel(c=3))
        out = math.native_call(net, x)
    assert out.shape.spatial == x.shape.spatial and out.shape.channel.volume == 2


@pytest.mark.parametrize('name', list(SOURCES))
def test_every_window_source_serves_the_in_memory_windows(name, burgers_dm):
    reference = PhiMLDataset(burgers_dm, n_targets=2, mode='memory', normalize=False)
    other = reference.variant(mode=name)
    for a, b in zip(reference.iterate_batches(5, epoch=1), other.iterate_batches(5, epoch=1)):
        for key in ('initial_state', 'targets'):
            np.testing.assert_array_equal(a[key].numpy(a[key].shape.names), b[key].numpy(a[key].shape.names))


@pytest.mark.parametrize('name', _slow_unless_torch(list(TRAINING_BACKENDS)))
def test_every_training_backend_lowers_the_loss(name, burgers_dm):
    pytest.importorskip(name)
    from phiml_data import TrainConfig, Trainer

    train = PhiMLDataset(burgers_dm, [0, 1, 2], n_targets=1, batch_size=8)
    history = Trainer(
        train, None, ModelConfig('conv_net', filters=4, layers=1), TrainConfig(name, epochs=3, progress=False)
    ).fit()
    assert history[-1]['train_loss'] < history[0]['train_loss']


def _modes():
    from phiml_data.modes import MODES

    return list(MODES)


@pytest.mark.slow
@pytest.mark.parametrize('name', _modes())
def test_every_mode_runs_the_main_job_and_its_saved_model_evaluates_to_the_same_numbers(name, tmp_path):
    import json

    from phiml_data.cli import main
    from phiml_data.modes import MODES

    config = tmp_path / 'c.yaml'
    config.write_text(
        f"scenario: {{name: burgers1d, resolution: [32], steps: 10, scheme: spectral, viscosity: 0.05}}\n"
        f"data: {{cache_dir: '{tmp_path / 'cache'}', n_sims: 8}}\ndataset: {{n_targets: 3, batch_size: 8}}\n"
        "model: {architecture: conv_net, filters: 8, layers: 1}\ntraining: {epochs: 1}\n"
        "physical: {initial: {viscosity: 0.25}, epochs: 1}\n"
        "hybrid: {warmup_epochs: 1, cycles: 1, alpha: 0.25, new_states: 2}\nevaluation: {min_test_sims: 1}\n"
    )
    out = tmp_path / name
    assert main(['run', '--config', str(config), '--quiet', f'training.mode={name}', f'output={out}']) == 0
    metrics, splits = (json.loads((out / f).read_text()) for f in ('metrics.json', 'splits.json'))
    assert metrics['mode'] == name and np.isfinite(metrics['summary']['velocity']['model'])
    assert splits['generated_fraction']['val'] == splits['generated_fraction']['test'] == 0.0
    assert not set(splits['generated_state_indices']) & {*splits['train'], *splits['val'], *splits['test']}
    if MODES[name].fits_parameters:
        p = metrics['parameters']['viscosity']
        assert p['initial'] == 0.25 and p['simulated_with'] == 0.05 and (out / 'parameters.png').exists()
        assert len(p['history']) >= 1 and metrics['fit']['converged'] in (True, False)
    assert main(['evaluate', str(out), '--quiet']) == 0
    again = json.loads((out / 'evaluate' / 'metrics.json').read_text())['summary']['velocity']['model']
    assert again == pytest.approx(metrics['summary']['velocity']['model'], rel=1e-6)
