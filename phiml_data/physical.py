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

import json
import math as pymath
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from phiml import math
from phiml.math import Diverged, NotConverged, Solve, Tensor, channel

from .backends import backend_named
from .dataset import PhiMLDataset
from .surrogate import Surrogate, packed_step


@dataclass(frozen=True)
class PhysicalConfig:
    """The physical model's fit (the `physical:` section of a run config).

    Attributes:
        initial: First guess of each learnable parameter (`Scenario.learnable`), e.g. `{'viscosity': 0.05}`;
            parameters not given start from the scenario's own value.
        optimizer: `'lbfgs'`: per epoch, `math.minimize` (L-BFGS-B, at most `iterations` iterations) of the mean loss
            over the epoch's windows; `'adam'`: one Adam step per batch.
        iterations: L-BFGS-B iterations per epoch.
        learning_rate: Adam's step on the logarithm of each parameter (0.1: about 10 % per step at first).
        lr_decay: Adam's learning rate factor applied after each epoch.
        epochs: Epochs over the training windows.
    """

    initial: dict = field(default_factory=dict)
    optimizer: str = 'lbfgs'
    iterations: int = 20
    learning_rate: float = 0.1
    lr_decay: float = 1.0
    epochs: int = 3

    def __post_init__(self):
        if not isinstance(self.initial, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and pymath.isfinite(v) and v > 0
            for v in self.initial.values()
        ):
            raise ValueError(f"initial must map parameter names to finite numbers > 0, got {self.initial!r}")
        if self.optimizer not in ('lbfgs', 'adam'):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {self.optimizer!r}")
        if self.learning_rate <= 0 or not 0 < self.lr_decay <= 1 or self.epochs < 0 or self.iterations < 1:
            raise ValueError(
                f"need learning_rate > 0, 0 < lr_decay <= 1, epochs >= 0, iterations >= 1; got "
                f"{self.learning_rate}, {self.lr_decay}, {self.epochs}, {self.iterations}"
            )


class PhysicalTrainer:
    """Fits the learnable parameters of a dataset's scenario to its windows through the differentiable solver.

    Args:
        train: Training windows (normalised batches are used as they come).
        val: Optional validation windows (training statistics).
        config: `PhysicalConfig`.
        backend: `'torch'` or `'jax'`: where the rollout and its gradient run.
        output: Folder for `history.json` and `checkpoint.json`; `None` keeps nothing on disk.

    Raises:
        ValueError: The scenario declares no learnable parameters, or `config.initial` names others.
    """

    def __init__(
        self, train: PhiMLDataset, val: PhiMLDataset = None, config=PhysicalConfig(), backend='torch', output=None
    ):
        scenario = train.manager.scenario
        self.train, self.val, self.config = train, val, config
        self.output = Path(output) if output else None
        self.names = tuple(scenario.learnable)
        unknown = sorted(set(config.initial) - set(self.names))
        if not self.names or unknown:
            raise ValueError(
                f"physical.initial: scenario '{scenario.name}' can learn {list(self.names)}; got {sorted(config.initial)}"
            )
        self.solver = scenario.coarse() or scenario
        self.backend = backend_named(backend)
        self.step_fn = packed_step(train, self.solver)
        with self.backend:
            guess = [float(config.initial.get(n, getattr(scenario, n))) for n in self.names]
            self.theta = math.log(math.tensor(guess, channel(param=','.join(self.names))))
            self._moments = (self.theta * 0, self.theta * 0, 0)
        self.guess = dict(zip(self.names, guess))
        self.initial_loss: float | None = None  # the training loss at the first guess (epoch 0's windows)
        self.zero_loss: float | None = None  # that of predicting zero: the data's mean square (normalised units)
        self.history: list[dict] = []
        self.epoch = 0

    def _surrogate(self, theta: Tensor) -> Surrogate:
        """The solver with parameters `exp(theta)` as a `Surrogate` without a network (rolled out with `correct=False`)."""
        base = lambda frame: self.step_fn(frame, {n: math.exp(theta.param[n]) for n in self.names})
        return Surrogate(None, self.train.input_channels, self.train.target_channels, self.backend, True, base)

    @property
    def surrogate(self) -> Surrogate:
        """The solver with the current parameters (what evaluation and the hybrid cycle roll out)."""
        return self._surrogate(self.theta)

    def params(self) -> dict[str, float]:
        """The current parameter values, e.g. `{'viscosity': 0.0101}`."""
        return {n: float(math.exp(self.theta.param[n])) for n in self.names}

    def rollout(self, initial_state: Tensor, steps: int) -> Tensor:
        """The solver with the current parameters: `Tensor (batchᵇ, timeᵇ=steps, xˢ, [yˢ], channelsᶜ=targets)`."""
        return self.surrogate.rollout(initial_state, steps, correct=False)

    def loss(self, theta: Tensor, initial_state: Tensor, targets: Tensor) -> Tensor:
        """Mean squared error (normalised units) of the solver's rollout with parameters `exp(theta)`; a scalar."""
        pred = self._surrogate(theta).rollout(initial_state, targets.shape.get_size('time'), correct=False)
        return math.mean((pred - targets) ** 2, math.shape(targets))

    def fit(self, epochs: int = None) -> list[dict]:
        """Optimises until `epochs` (default `config.epochs`) epochs are done; after each: appends `{'epoch',
        'train_loss', 'val_loss', 'params', 'seconds', 'steps', 'gradient', 'converged', 'stop'}` to the history and
        writes history and checkpoint. After the last epoch, `fit_warnings()` says whether the fit reduced its loss and
        converged (also issued as `FitWarning`s).

        Raises:
            FitError: The parameters or the loss became non-finite (a diverged fit); the message names each
                parameter, the epoch, the first guess and the last value.
        """
        epochs = self.config.epochs if epochs is None else epochs
        with self.backend:
            while self.epoch < epochs:
                t0 = time.perf_counter()
                batches = list(self.train.iterate_batches(epoch=self.epoch))
                objective = _Objective(self, batches)
                if self.initial_loss is None:
                    self.initial_loss = objective.checked(self.theta, self.epoch, 'at the first guess')[0]
                    self.zero_loss = objective.scale
                if self.config.optimizer == 'lbfgs':
                    losses, stop = self._lbfgs(objective)
                else:
                    losses, stop = self._adam_epoch(batches), f'{len(batches)} Adam steps'
                loss, gradient = objective.checked(self.theta, self.epoch, stop)
                self.history.append(
                    {
                        'epoch': self.epoch,
                        'train_loss': loss if self.config.optimizer == 'lbfgs' else sum(losses) / len(losses),
                        'val_loss': self.validate(),
                        'params': self.params(),
                        'seconds': time.perf_counter() - t0,
                        'steps': len(losses),
                        'gradient': gradient,
                        'converged': objective.converged(loss, gradient),
                        'stop': stop,
                    }
                )
                self.epoch += 1
                self._save()
        for message in self.fit_warnings():
            warnings.warn(message, FitWarning, stacklevel=2)
        return self.history

    def _lbfgs(self, objective: _Objective) -> tuple[list[float], str]:
        """`math.minimize` (L-BFGS-B) of the epoch's mean loss from the current parameters. SciPy's line search ends
        "ABNORMAL" where it finds no lower loss along its direction, at an optimum too (PhiML raises `Diverged`):
        the point it reached is kept and judged by `_Objective.checked` like any other."""
        solve = Solve(
            'L-BFGS-B', 0, 1e-12, x0=self.theta, max_iterations=self.config.iterations, suppress=[NotConverged]
        )
        try:
            theta, stop = (
                math.minimize(objective.mean_loss, solve),
                f'{self.config.iterations} L-BFGS-B iterations or tolerance',
            )
        except Diverged as err:
            messages = err.result.msg if isinstance(err.result.msg, (list, tuple)) else [err.result.msg]
            theta, stop = err.result.x, f"L-BFGS-B ended: {' '.join(str(m).strip() for m in messages)}"
        self.theta = math.stop_gradient(theta)
        return [objective.value(self.theta)], stop

    def _adam_epoch(self, batches: list[dict]) -> list[float]:
        gradient, losses = math.gradient(self.loss, 'theta', get_output=True), []
        for b in batches:
            loss, grad = gradient(self.theta, b['initial_state'], b['targets'])
            self.theta = self._adam(math.stop_gradient(grad))
            losses.append(float(math.stop_gradient(loss)))
        return losses

    def fit_warnings(self) -> list[str]:
        """What a researcher must know about the fit so far: a loss that did not fall from the first guess (a flat
        region: the data do not constrain the parameters there), a last epoch that ended above the gradient
        tolerance (more epochs or iterations needed). Empty for a fit that ended at a converged optimum."""
        if not self.history:
            return []
        last, guess = self.history[-1], ', '.join(f'{n} {g:.6g}' for n, g in self.guess.items())
        reached = ', '.join(f'{n} {v:.6g}' for n, v in last['params'].items())
        found = []
        if last['train_loss'] >= (1 - 1e-3) * self.initial_loss and last['train_loss'] > 1e-12 * self.zero_loss:
            found.append(
                f"physical fit: the loss did not fall ({self.initial_loss:.4g} at the first guess {guess}, "
                f"{last['train_loss']:.4g} at {reached} after {len(self.history)} epochs; predicting zero: "
                f"{self.zero_loss:.4g}): the data do not constrain the parameters there; start from a guess nearer "
                f"the expected value"
            )
        elif not last['converged']:
            found.append(
                f"physical fit: not converged after {len(self.history)} epochs ({reached}; loss gradient "
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

    def validate(self) -> float | None:
        """Mean rollout loss over the validation windows with the current parameters, or `None` without them."""
        if self.val is None:
            return None
        with self.backend:
            losses = [
                (
                    float(math.stop_gradient(self.loss(self.theta, b['initial_state'], b['targets']))),
                    b['targets'].shape.get_size('batch'),
                )
                for b in self.val.iterate_batches(epoch=0)
            ]
        return sum(x * n for x, n in losses) / sum(n for _, n in losses)

    # --- checkpoints ---

    def state(self) -> dict:
        """Everything `load_state` needs to continue exactly: parameters, Adam's moments and step, history."""
        m, v, t = self._moments
        values = lambda x: [float(x.param[n]) for n in self.names]
        return {
            'epoch': self.epoch,
            'names': list(self.names),
            'theta': values(self.theta),
            'adam': {'m': values(m), 'v': values(v), 't': t},
            'history': self.history,
            'initial_loss': self.initial_loss,
            'zero_loss': self.zero_loss,
            'config': asdict(self.config),
        }

    def load_state(self, state: dict):
        """Restores `state()`; `fit()` then continues from its epoch."""
        if state['names'] != list(self.names):
            raise ValueError(f"checkpoint holds parameters {state['names']}; this scenario learns {list(self.names)}")
        as_tensor = lambda values: math.tensor(values, channel(param=','.join(self.names)))
        with self.backend:
            self.theta = as_tensor(state['theta'])
            self._moments = (as_tensor(state['adam']['m']), as_tensor(state['adam']['v']), state['adam']['t'])
        self.epoch, self.history = state['epoch'], state['history']
        self.initial_loss, self.zero_loss = state['initial_loss'], state['zero_loss']
        return self

    def _save(self):
        if self.output is not None:
            self.save_checkpoint(self.output)
            (self.output / 'history.json').write_text(json.dumps(self.history, indent=1))

    def save_checkpoint(self, path):
        """Writes `state()` to `path/checkpoint.json`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / 'checkpoint.json').write_text(json.dumps(self.state(), indent=1))

    def load_checkpoint(self, path):
        """Restores `path/checkpoint.json` written by this trainer."""
        file = Path(path) / 'checkpoint.json'
        if not file.exists():
            raise FileNotFoundError(f"No physical checkpoint in {path} (checkpoint.json missing)")
        return self.load_state(json.loads(file.read_text()))


_GRADIENT_TOLERANCE = 1e-6  # of the data's mean square: the loss gradient (per unit log-parameter) of a converged fit


class FitError(RuntimeError):
    """A physical fit that diverged (non-finite parameters or loss); the message names parameters, epoch, guess and
    last value."""


class FitWarning(UserWarning):
    """A physical fit that did not reduce its loss or did not converge (`PhysicalTrainer.fit_warnings`)."""


class _Objective:
    """The mean rollout loss over one epoch's windows as a function of the log-parameters `theta`, and the checks of
    a fit's end point: finite values (else `FitError`) and the gradient against the data's scale."""

    def __init__(self, trainer: PhysicalTrainer, batches: list[dict]):
        self.trainer, self.batches = trainer, batches
        self.scale = sum(float(math.mean(b['targets'] ** 2, math.shape(b['targets']))) for b in batches) / len(batches)

    def mean_loss(self, theta: Tensor) -> Tensor:
        """The mean loss over the epoch's windows with parameters `exp(theta)`; a scalar."""
        losses = [self.trainer.loss(theta, b['initial_state'], b['targets']) for b in self.batches]
        return sum(losses) / len(losses)

    def value(self, theta: Tensor) -> float:
        return float(math.stop_gradient(self.mean_loss(theta)))

    def checked(self, theta: Tensor, epoch: int, stop: str) -> tuple[float, float]:
        """Loss and largest gradient component (per unit log-parameter) at `theta`.

        Raises:
            FitError: `theta`, the loss or its gradient are not finite.
        """
        loss, grad = math.gradient(self.mean_loss, 'theta', get_output=True)(theta)
        loss, grad = float(math.stop_gradient(loss)), math.stop_gradient(grad)
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
