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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from phiml import math
from phiml.math import NotConverged, Solve, Tensor, channel

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
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in self.initial.values()
        ):
            raise ValueError(f"initial must map parameter names to numbers > 0, got {self.initial!r}")
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
        'train_loss', 'val_loss', 'params', 'seconds', 'steps'}` to the history and writes history and checkpoint."""
        epochs = self.config.epochs if epochs is None else epochs
        with self.backend:
            while self.epoch < epochs:
                t0 = time.perf_counter()
                batches = list(self.train.iterate_batches(epoch=self.epoch))
                losses = self._lbfgs(batches) if self.config.optimizer == 'lbfgs' else self._adam_epoch(batches)
                self.history.append(
                    {
                        'epoch': self.epoch,
                        'train_loss': sum(losses) / len(losses),
                        'val_loss': self.validate(),
                        'params': self.params(),
                        'seconds': time.perf_counter() - t0,
                        'steps': len(losses),
                    }
                )
                self.epoch += 1
                self._save()
        return self.history

    def _lbfgs(self, batches: list[dict]) -> list[float]:
        def mean_loss(theta):
            return sum(self.loss(theta, b['initial_state'], b['targets']) for b in batches) / len(batches)

        solve = Solve(
            'L-BFGS-B', 0, 1e-12, x0=self.theta, max_iterations=self.config.iterations, suppress=[NotConverged]
        )
        self.theta = math.stop_gradient(math.minimize(mean_loss, solve))
        return [float(math.stop_gradient(mean_loss(self.theta)))]

    def _adam_epoch(self, batches: list[dict]) -> list[float]:
        gradient, losses = math.gradient(self.loss, 'theta', get_output=True), []
        for b in batches:
            loss, grad = gradient(self.theta, b['initial_state'], b['targets'])
            self.theta = self._adam(math.stop_gradient(grad))
            losses.append(float(math.stop_gradient(loss)))
        return losses

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
