"""Physics in PhiML (`phiml_data.scenarios`): one step is the same on NumPy, torch and JAX, gradients through
several steps match central differences, and training through the solver converts nothing to NumPy."""

import warnings

import numpy as np
import pytest
from phiml import math
from phiml.backend import NUMPY

from phiml_data import Burgers1D, Burgers2D, SmokePlume
from phiml_data.scenarios import field_values, step_values

torch = pytest.importorskip('torch')
from phiml.backend.torch import TORCH  # noqa: E402

SCENARIOS = {
    'burgers1d-spectral': Burgers1D(resolution=32, steps=3, scheme='spectral', refine=1, viscosity=0.05),
    'burgers2d-spectral': Burgers2D(resolution=32, steps=3, scheme='spectral', refine=1, viscosity=0.05),
    'burgers2d-phiflow': Burgers2D(resolution=16, steps=3),
    'smoke': SmokePlume(resolution=16, steps=3),
}


def _state(scenario):
    """Stored values of sim 0 after one step (the smoke is at rest initially), on NumPy."""
    with NUMPY:
        state = scenario.initial_state(0)
        state = scenario.step(state)
        return {k: field_values(v) for k, v in state.items()}


def _backends():
    out = {'numpy': NUMPY, 'torch': TORCH}
    try:
        from phiml.backend.jax import JAX

        out['jax'] = JAX
    except ImportError:
        pass
    return out


@pytest.mark.parametrize(
    'name', [pytest.param(n, marks=pytest.mark.slow) if n.startswith('smoke') else n for n in sorted(SCENARIOS)]
)
def test_one_step_is_the_same_on_every_backend(name, monkeypatch):
    from phiml.backend.torch._torch_backend import TorchBackend

    scenario = SCENARIOS[name]
    values = _state(scenario)
    results = {}
    for backend_name, backend in _backends().items():
        with backend, monkeypatch.context() as patch:
            if backend_name == 'torch' and name != 'smoke':  # no NumPy in a step: a conversion to NumPy fails the test
                patch.setattr(
                    TorchBackend, 'numpy', _refuse
                )  # (PhiFlow's own advection checks a pad constant via NumPy)
            inputs = {k: math.convert(v, backend) for k, v in values.items()}
            out = step_values(scenario, inputs)
            assert all(v.default_backend == backend for v in out.values()), backend_name  # no silent conversion
        results[backend_name] = {k: v.numpy(v.shape.names) for k, v in out.items()}
    for backend_name, result in results.items():
        for k, v in result.items():
            scale = np.abs(results['numpy'][k]).max() + 1e-12
            np.testing.assert_allclose(v, results['numpy'][k], atol=2e-5 * scale, err_msg=f'{backend_name} {k}')


def _refuse(*args, **kwargs):
    raise AssertionError('a torch tensor was converted to NumPy inside a step')


def _loss(scenario, values, param, steps=3):
    """Mean square of the state after `steps` steps, with the learnable parameter `param` (a tensor)."""
    name = scenario.learnable[0]
    for _ in range(steps):
        values = {**values, **step_values(scenario, values, params={name: param})}
    dynamic = [k for k, spec in scenario.fields.items() if not spec.static]
    return sum(math.mean(values[k] ** 2, values[k].shape) for k in dynamic)


def _gradient_errors(scenario, backend) -> tuple[float, float]:
    """Relative errors, in float64 on `backend`, of autograd through 3 steps against central differences: for the
    learnable parameter, and for the state along a random direction (a directional derivative)."""
    name = scenario.learnable[0]
    value = getattr(scenario, name)
    with backend, math.precision(64):
        values = {k: math.convert(math.to_float(v), backend) for k, v in _state(scenario).items()}
        key = next(k for k, spec in scenario.fields.items() if not spec.static)
        param = math.convert(math.tensor(value), backend)
        grad = math.gradient(lambda p: _loss(scenario, values, p), 'p', get_output=False)(param)
        eps = 1e-5 * value
        numeric = (_loss(scenario, values, param + eps) - _loss(scenario, values, param - eps)) / (2 * eps)
        u = values[key]
        grad_u = math.gradient(lambda u_: _loss(scenario, {**values, key: u_}, param), 'u_', get_output=False)(u)
        direction = math.tensor(np.random.default_rng(0).standard_normal(u.shape.sizes), u.shape)
        along = float(math.sum(grad_u * direction, u.shape))
        h = 1e-6 * float(math.sqrt(math.mean(u**2, u.shape)))
        plus, minus = (_loss(scenario, {**values, key: u + s_ * h * direction}, param) for s_ in (1, -1))
        numeric_u = float((plus - minus) / (2 * h))
        grad, numeric = float(grad), float(numeric)  # inside precision(64): float() casts to the current precision
        assert abs(grad) > 0 and float(math.max(abs(grad_u), grad_u.shape)) > 0  # no silent cut
    return abs(grad - numeric) / abs(numeric), abs(along - numeric_u) / abs(numeric_u)


@pytest.mark.parametrize(
    'name', ['burgers1d-spectral', 'burgers2d-spectral', pytest.param('smoke', marks=pytest.mark.slow)]
)
def test_gradients_through_three_steps_match_central_differences_on_torch(name):
    """`pytest tests/test_physics.py -k gradients -s` prints the measured errors the README quotes."""
    parameter, state = _gradient_errors(SCENARIOS[name], TORCH)
    print(f"\n{name} on torch, float64: parameter gradient rel. error {parameter:.1e}, state {state:.1e}")
    tolerance = 2e-2 if name == 'smoke' else 1e-6  # smoke: the pressure solve's tolerance (1e-5) limits it
    assert parameter < tolerance and state < tolerance


@pytest.mark.slow
@pytest.mark.parametrize('name', ['burgers1d-spectral', 'burgers2d-spectral'])
def test_gradients_through_three_steps_on_jax_in_float64(name):
    import jax
    from phiml.backend.jax import JAX

    scenario = SCENARIOS[name]
    with jax.enable_x64(True):
        parameter, state = _gradient_errors(scenario, JAX)
        with JAX, math.precision(64):
            values = {k: math.convert(math.to_float(v), JAX) for k, v in _state(scenario).items()}
            param = math.convert(math.tensor(scenario.viscosity), JAX)
            compiled = math.jit_compile(lambda p: _loss(scenario, values, p))
            assert float(compiled(param)) == pytest.approx(float(_loss(scenario, values, param)), rel=1e-12)
    print(f"\n{name} on jax, float64: parameter gradient rel. error {parameter:.1e}, state {state:.1e}")
    assert parameter < 1e-6 and state < 1e-6


@pytest.mark.parametrize('solver_gradient', [False, True])
def test_a_training_step_through_the_solver_converts_nothing_to_numpy(tmp_path, monkeypatch, solver_gradient):
    from phiml import nn
    from phiml.backend.torch._torch_backend import TorchBackend

    from phiml_data import DataManager, ModelConfig, PhiMLDataset, TrainConfig, Trainer

    dm = DataManager(tmp_path, Burgers2D(resolution=16, steps=4, scheme='spectral', refine=2))
    dm.generate(2, progress=False)
    train = PhiMLDataset(dm, n_targets=3, batch_size=4, augment=False)
    trainer = Trainer(
        train,
        None,
        ModelConfig('conv_net', filters=4, layers=1, base='coarse_solver'),
        TrainConfig(progress=False, solver_gradient=solver_gradient),
    )
    b = next(train.iterate_batches())

    def refuse(*args, **kwargs):
        raise AssertionError('a torch tensor was converted to NumPy inside the training step')

    monkeypatch.setattr(TorchBackend, 'numpy', refuse)
    with trainer.backend:
        weights = [p.detach().clone() for p in trainer.net.parameters()]
        loss = nn.update_weights(trainer.net, trainer.optimizer, trainer.loss, b['initial_state'], b['targets'])
    assert float(math.stop_gradient(loss)) > 0
    assert any(not torch.equal(w, p) for w, p in zip(weights, trainer.net.parameters()))


@pytest.mark.slow
def test_generation_compiled_on_jax_matches_the_numpy_reference(tmp_path):
    import dataclasses

    from phiml_data import DataManager, simulate

    scenario = Burgers2D(resolution=32, steps=4, scheme='spectral', refine=2)
    reference = simulate(scenario, [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter(
            'error', RuntimeWarning
        )  # PhiML warns when jit_compile gets NumPy tensors and runs eagerly
        compiled = simulate(dataclasses.replace(scenario, backend='jax'), [0, 1])
    for a, b in zip(reference, compiled):
        assert b['velocity'].dtype == a['velocity'].dtype and b['velocity'].default_backend.name == 'numpy'
        np.testing.assert_allclose(
            a['velocity'].numpy('time,x,y,vector'), b['velocity'].numpy('time,x,y,vector'), rtol=0, atol=1e-6
        )
    dm = DataManager(tmp_path, dataclasses.replace(scenario, backend='jax'))
    assert dm.generate(2, progress=False) == [0, 1] and dm.load_phiml_cache(1)['velocity'].dtype == a['velocity'].dtype
    with pytest.raises(ValueError, match=r"SmokePlume.backend must be 'numpy' \(its step does not compile\)"):
        SmokePlume(backend='jax')


def test_our_smoke_numerics_convert_nothing_to_numpy(monkeypatch):
    from phiml.backend.torch._torch_backend import TorchBackend

    from phiml_data.scenarios import conservative_advection, staggered_faces, to_field

    scenario = SCENARIOS['smoke']
    values = _state(scenario)
    with TORCH:
        faces = math.convert(values['velocity'], TORCH)
        density = math.convert(values['density'], TORCH)
        grid = to_field(faces, scenario.metadata(0), 'velocity')
        monkeypatch.setattr(TorchBackend, 'numpy', _refuse)
        out = conservative_advection(density, staggered_faces(grid), scenario.dt, {'x': 2.0, 'y': 2.0})
    assert out.default_backend == TORCH
