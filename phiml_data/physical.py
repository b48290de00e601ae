"""Physical training: the scenario's own solver with its learnable parameters (e.g. Burgers' viscosity) fitted to the
cached windows by gradient descent through the PhiML solver.

Step 4 of the pipeline (scenarios -> manager -> dataset -> trainer), beside the network `Trainer`: the same
`PhiMLDataset` batches, the same rollout and loss in normalised units, the same history, checkpoints and
evaluation. The solver is `Scenario.coarse()` where the data were simulated on a finer grid (the fitted parameters
then also absorb the coarse grid's error), else the scenario itself. Parameters are optimised as logarithms (they
stay positive), on the training backend, by `math.minimize` with L-BFGS-B over each epoch's windows (default) or by
Adam (written in `phiml.math`) batch by batch.

Example:
    >>> from phiml_data.physical import PhysicalConfig, PhysicalTrainer
    >>> dm = DataManager(tmp, Burgers1D(resolution=32, steps=6, scheme='spectral', viscosity=0.1))
    >>> _ = dm.generate(2, progress=False)
    >>> fit = PhysicalTrainer(PhiMLDataset(dm, n_targets=2), config=PhysicalConfig({'viscosity': 0.3}, epochs=1))
    >>> round(fit.fit()[-1]['params']['viscosity'], 4)
    0.1
"""

from __future__ import annotations

import dataclasses
import math as pymath
import time
import warnings

import numpy as np
from phiml import math
from phiml.math import Tensor, channel

from .config import PhysicalConfig
from .dataset import PhiMLDataset
from .surrogate import Surrogate, packed_step
from .training import EpochTrainer


class PhysicalTrainer(EpochTrainer):
    """Fits the learnable parameters of a dataset's scenario to its windows through the differentiable solver.

    Args:
        train: Training windows (normalised batches are used as they come).
        val: Optional validation windows (training statistics).
        config: `PhysicalConfig`.
        backend: `'torch'` or `'jax'`: where the rollout and its gradient run.
        output: Folder for `history.json` and `checkpoints/{last,best}`; `None` keeps nothing on disk.

    Raises:
        ValueError: The scenario declares no learnable parameters, or `config.initial` names others.
    """

    kind = 'physical'

    def __init__(
        self, train: PhiMLDataset, val: PhiMLDataset = None, config=PhysicalConfig(), backend='torch', output=None
    ):
        super().__init__(train, val, config, backend, output)
        scenario = train.scenario
        self.names = tuple(scenario.learnable)
        unknown = sorted(set(config.initial) - set(self.names))
        if not self.names or unknown:
            raise ValueError(
                f"physical.initial: scenario '{scenario.name}' can learn {list(self.names)}; got {sorted(config.initial)}"
            )
        self.solver = physical_model(scenario, config.refine)
        self.step_fn = packed_step(train, self.solver)
        with self.backend:
            guess = [float(config.initial.get(n, getattr(scenario, n))) for n in self.names]
            self.theta = math.log(math.tensor(guess, channel(param=','.join(self.names))))
            self._moments = (self.theta * 0, self.theta * 0, 0)
        self.guess = dict(zip(self.names, guess))
        self.initial_loss: float | None = None  # the training loss at the first guess (epoch 0's windows)
        self.zero_loss: float | None = None  # that of predicting zero: the data's mean square (normalised units)

    def _surrogate(self, theta: Tensor) -> Surrogate:
        """The solver with parameters `exp(theta)` as a `Surrogate` without a network."""
        base = lambda frame: self.step_fn(frame, {n: math.exp(theta.param[n]) for n in self.names})
        return Surrogate(None, self.train.input_channels, self.train.target_channels, self.backend, True, base)

    @property
    def surrogate(self) -> Surrogate:
        """The solver with the current parameters (what evaluation and the hybrid cycle roll out)."""
        return self._surrogate(self.theta)

    def params(self) -> dict[str, float]:
        """The current parameter values, e.g. `{'viscosity': 0.0101}`."""
        return {n: float(math.exp(self.theta.param[n])) for n in self.names}

    def loss(self, theta: Tensor, initial_state: Tensor, targets: Tensor) -> Tensor:
        """Mean squared error (normalised units) of the solver's rollout with parameters `exp(theta)`; a scalar."""
        pred = self._surrogate(theta).rollout(initial_state, targets.shape.get_size('time'))
        return math.mean((pred - targets) ** 2, math.shape(targets))

    def batch_loss(self, batch: dict, dataset: PhiMLDataset = None) -> Tensor:
        return self.loss(self.theta, batch['initial_state'], batch['targets'])

    def fit(self, epochs: int = None, train: PhiMLDataset = None) -> list[dict]:
        """Optimises until `epochs` (default `config.epochs`) epochs are done; after each: appends `{'epoch',
        'train_loss', 'val_loss', 'params', 'seconds', 'steps', 'gradient', 'converged', 'stop'}` to the history and
        writes history and checkpoints. After the last epoch, `fit_warnings()` says whether the fit reduced its loss
        and converged (also issued as `FitWarning`s). `train`: see `EpochTrainer.fit`.

        Raises:
            FitError: The parameters or the loss became non-finite (a diverged fit); the message names each
                parameter, the epoch, the first guess and the last value.
        """
        return super().fit(epochs, train)

    def _epoch(self, train: PhiMLDataset) -> dict:
        t0 = time.perf_counter()
        batches = list(train.iterate_batches(epoch=self.epoch))
        objective = _Objective(self, batches)
        if self.initial_loss is None:
            self.initial_loss = objective.checked(self.theta, self.epoch, 'at the first guess')[0]
            self.zero_loss = objective.scale
        if self.config.optimizer == 'lbfgs':
            losses, stop = self._lbfgs(objective)
        else:
            losses, stop = self._adam_epoch(batches), f'{len(batches)} Adam steps'
        loss, gradient = objective.checked(self.theta, self.epoch, stop)
        return {
            'train_loss': loss if self.config.optimizer == 'lbfgs' else sum(losses) / len(losses),
            'val_loss': self.validate(),
            'params': self.params(),
            'seconds': time.perf_counter() - t0,
            'steps': len(losses),
            'gradient': gradient,
            'converged': objective.converged(loss, gradient),
            'stop': stop,
        }

    def _fitted(self):
        for message in self.fit_warnings():
            warnings.warn(message, FitWarning, stacklevel=3)

    def _lbfgs(self, objective: _Objective) -> tuple[list[float], str]:
        """SciPy's L-BFGS-B on the epoch's mean loss from the current parameters, with value and gradient summed batch
        by batch (`_Objective.value_and_gradient`: one batch's graph in memory at a time), for `config.iterations`
        iterations (a small gradient per unit log-parameter far below the parameter's range is no optimum, so it
        does not stop on one). Its line search ends "ABNORMAL" where it finds no lower loss along its direction, at an
        optimum too: the point it reached is kept and judged by `_Objective.checked` like any other."""
        from scipy.optimize import minimize

        def fun(x):
            value, grad = objective.value_and_gradient(self._as_theta(x))
            return value, grad.numpy('param').astype(np.float64)

        x0 = math.stop_gradient(self.theta).numpy('param').astype(np.float64)
        options = {'maxiter': self.config.iterations, 'ftol': 1e-12, 'gtol': 0.0}  # judged by `checked`, not here
        result = minimize(fun, x0, jac=True, method='L-BFGS-B', options=options)
        self.theta = self._as_theta(result.x)
        return [objective.value(self.theta)], f'L-BFGS-B: {result.message} ({result.nit} iterations)'

    def _as_theta(self, values) -> Tensor:
        return math.tensor(np.asarray(values, np.float32), channel(param=','.join(self.names)))

    def _adam_epoch(self, batches: list[dict]) -> list[float]:
        gradient, losses = math.gradient(self.loss, 'theta', get_output=True), []
        for b in batches:
            loss, grad = gradient(self.theta, b['initial_state'], b['targets'])
            self.theta = self._adam(math.stop_gradient(grad))
            losses.append(float(math.stop_gradient(loss)))
        return losses

    def fit_warnings(self) -> list[str]:
        """What a researcher must know about the fit so far: a loss that did not fall from the first guess in the
        first epoch (on the same windows: a flat region, the data do not constrain the parameters there), a last
        epoch that ended above the gradient tolerance (more epochs or iterations needed). Empty for a fit that ended
        at a converged optimum."""
        if not self.history:
            return []
        first, last = self.history[0], self.history[-1]
        guess = ', '.join(f'{n} {g:.6g}' for n, g in self.guess.items())
        reached = ', '.join(f'{n} {v:.6g}' for n, v in first['params'].items())
        ended = ', '.join(f'{n} {v:.6g}' for n, v in last['params'].items())
        found = []
        flat = first['train_loss'] >= (1 - 1e-3) * self.initial_loss
        if flat and first['train_loss'] > 1e-12 * self.zero_loss:
            found.append(
                f"physical fit: the loss did not fall ({self.initial_loss:.4g} at the first guess {guess}, "
                f"{first['train_loss']:.4g} at {reached} after the first epoch, on the same windows; predicting zero: "
                f"{self.zero_loss:.4g}): the data do not constrain the parameters there; start from a guess nearer "
                f"the expected value"
            )
        elif not last['converged']:
            found.append(
                f"physical fit: not converged after {len(self.history)} epochs ({ended}; loss gradient "
                f"{last['gradient']:.3g}, tolerance {_GRADIENT_TOLERANCE:g} of the data's mean square): raise "
                f"physical.epochs or physical.iterations"
            )
        return found

    def _adam(self, grad: Tensor, b1=0.9, b2=0.999, eps=1e-8) -> Tensor:
        m, v, t = self._moments
        m, v, t = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad**2, t + 1
        self._moments = (m, v, t)
        lr = self.config.learning_rate * self.config.lr_decay**self.epoch
        return self.theta - lr * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)

    # --- what a run reports ---

    def report(self) -> dict:
        """`metrics.json` entries: per learnable parameter its first guess, fitted value, the value the data were
        simulated with, the relative error and the value after each epoch (`'parameters'`); how the fit ended
        (`'fit'`: converged, how it stopped, first and last loss, warnings)."""
        scenario, fitted = self.train.scenario, self.params()
        parameters = {}
        for name, value in fitted.items():
            true = float(getattr(scenario, name))
            parameters[name] = {
                'initial': self.guess[name],
                'fitted': value,
                'simulated_with': true,
                'relative_error': abs(value - true) / abs(true),
                'history': [r['params'][name] for r in self.history],
            }
        last = self.history[-1] if self.history else {}
        fit = {
            'converged': last.get('converged'),
            'stop': last.get('stop'),
            'initial_loss': self.initial_loss,
            'final_loss': last.get('train_loss'),
            'warnings': self.fit_warnings(),
        }
        return {'parameters': parameters, 'fit': fit}

    def plot(self, path):
        """`plots.plot_parameters` of this fit: the first guess, every epoch, the simulated values."""
        from . import plots

        truth = {n: float(getattr(self.train.scenario, n)) for n in self.names}
        return plots.plot_parameters(self.history, truth, path, guess=self.guess)

    # --- checkpoints ---

    def identity(self) -> dict:
        return {**super().identity(), 'parameters': list(self.names)}

    def _state(self) -> dict:
        m, v, t = self._moments
        values = lambda x: [float(x.param[n]) for n in self.names]
        return {
            'theta': values(self.theta),
            'adam': {'m': values(m), 'v': values(v), 't': t},
            'initial_loss': self.initial_loss,
            'zero_loss': self.zero_loss,
        }

    def _restore(self, state: dict, parts: dict):
        as_tensor = lambda values: math.tensor(values, channel(param=','.join(self.names)))
        self.theta = as_tensor(state['theta'])
        self._moments = (as_tensor(state['adam']['m']), as_tensor(state['adam']['v']), state['adam']['t'])
        self.initial_loss, self.zero_loss = state['initial_loss'], state['zero_loss']


_GRADIENT_TOLERANCE = 1e-6  # of the data's mean square: the loss gradient (per unit log-parameter) of a converged fit


class FitError(RuntimeError):
    """A physical fit that diverged (non-finite parameters or loss); the message names parameters, epoch, guess and
    last value."""


class FitWarning(UserWarning):
    """A physical fit that did not reduce its loss or did not converge (`PhysicalTrainer.fit_warnings`)."""


class _Objective:
    """The mean rollout loss over one epoch's windows as a function of the log-parameters `theta`, and the checks of
    a fit's end point: finite values (else `FitError`) and the gradient against the data's scale. Every window weighs
    the same (a batch by its number of windows), so the objective does not depend on how the epoch is batched."""

    def __init__(self, trainer: PhysicalTrainer, batches: list[dict]):
        self.trainer, self.batches = trainer, batches
        sizes = [b['targets'].shape.get_size('batch') for b in batches]
        self.weights = [n / sum(sizes) for n in sizes]
        self.scale = sum(w * float(math.mean(b['targets'] ** 2, math.shape(b['targets']))) for w, b in self._weighted())

    def _weighted(self):
        """`(weight, batch)` pairs: a batch weighs its share of the epoch's windows."""
        return zip(self.weights, self.batches)

    def value_and_gradient(self, theta: Tensor) -> tuple[float, Tensor]:
        """The mean loss over the epoch's windows with parameters `exp(theta)` and its gradient `Tensor (paramᶜ)`,
        accumulated batch by batch."""
        gradient = math.gradient(self.trainer.loss, 'theta', get_output=True)
        total, grad = 0.0, 0
        for w, b in self._weighted():
            loss, g = gradient(theta, b['initial_state'], b['targets'])
            total, grad = total + w * float(math.stop_gradient(loss)), grad + w * math.stop_gradient(g)
        return total, grad

    def value(self, theta: Tensor) -> float:
        loss = lambda b: float(math.stop_gradient(self.trainer.loss(theta, b['initial_state'], b['targets'])))
        return sum(w * loss(b) for w, b in self._weighted())

    def checked(self, theta: Tensor, epoch: int, stop: str) -> tuple[float, float]:
        """Loss and largest gradient component (per unit log-parameter) at `theta`.

        Raises:
            FitError: `theta`, the loss or its gradient are not finite.
        """
        loss, grad = self.value_and_gradient(theta)
        finite = math.is_finite(theta).all and math.is_finite(grad).all
        if not (finite and pymath.isfinite(loss)):
            t = self.trainer
            last = ', '.join(f'{n} = {float(math.exp(theta.param[n])):.6g}' for n in t.names)
            guess = ', '.join(f'{g:.6g}' for g in t.guess.values())
            raise FitError(
                f"physical fit diverged in epoch {epoch} ({stop}): {last} (first guess {guess}), loss {loss:.4g}; "
                f"the solver is unstable there: start from a guess nearer the expected value, or use "
                f"physical.optimizer: adam with a smaller learning_rate"
            )
        return loss, float(math.max(abs(grad), grad.shape))

    def converged(self, loss: float, gradient: float) -> bool:
        """Whether the gradient is at tolerance (relative to the data's mean square), or the loss at round-off."""
        return gradient <= _GRADIENT_TOLERANCE * self.scale or loss <= 1e-12 * self.scale


def check_solver(scenario, backend: str, need_coarse: bool = False, refine: int = None) -> str | None:
    """Why the solver that physical training (`physical_model(scenario, refine)`) or `model.base: coarse_solver`
    (`need_coarse`) runs cannot run on the training backend with gradients to its learnable parameters, or `None`.
    One probe step of sim 0's initial state.

    Example:
        >>> check_solver(Burgers1D(resolution=32, scheme='spectral'), 'torch') is None
        True
    """
    coarse = scenario.coarse()
    if need_coarse and coarse is None:
        return (
            f"'coarse_solver' needs ground truth simulated on a finer grid than the cache's (e.g. scheme: spectral, "
            f"refine: 4); scenario '{scenario.name}' solves on the cache's grid, so its solver made the data"
        )
    if not need_coarse and not scenario.learnable:
        return f"scenario '{scenario.name}' has no learnable parameters to fit (use training.mode: synthetic)"
    solver = coarse if need_coarse else physical_model(scenario, refine)
    from phiml.backend import NUMPY

    from .backends import backend_named
    from .scenarios import field_values, step_values

    with NUMPY:
        values = {f: solver.stored(field_values(v)) for f, v in solver.initial_state(0).items()}
    try:
        with backend_named(backend) as b:
            values = {f: math.convert(math.to_float(v), b) for f, v in values.items()}
            params = {n: math.convert(math.tensor(float(getattr(solver, n))), b) for n in solver.learnable}

            def loss(params):
                out = step_values(solver, values, params=params)
                return sum(math.sum(v**2, v.shape) for v in out.values())

            grad = math.gradient(loss, 'params', get_output=False)(params) if params else {}
        dead = [n for n, g in grad.items() if not float(abs(g)) > 0 or not pymath.isfinite(float(g))]
    except Exception as err:  # whatever the backend raises: one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return f"the solver of scenario '{scenario.name}' cannot run on backend '{backend}' ({type(err).__name__}: {first})"
    if dead:
        return f"no gradient flows to {dead} through the solver of scenario '{scenario.name}' on backend '{backend}'"
    return None


def physical_model(scenario, refine: int = None):
    """The scenario the physical model runs: the data's own (`refine=None`), or simulating `refine` times finer than
    the cache's grid (`1`: on the cache's grid).

    Raises:
        ValueError: `refine` is given for a scenario without a `refine` parameter.
    """
    if refine is None or refine == getattr(scenario, 'refine', 1):
        return scenario
    if not hasattr(scenario, 'refine'):
        raise ValueError(f"physical.refine: scenario '{scenario.name}' simulates on the cache's grid only (no refine)")
    return dataclasses.replace(scenario, refine=refine)
