"""Training modes, one registered strategy each (`training.mode`): how a run trains, which model it evaluates, what
it reports, and how a finished run's model is loaded again.

Step 4 of the pipeline (scenarios -> manager -> dataset -> trainer), as the main job (`pipeline.py`) and `evaluate`
see it: they ask `MODES[cfg.training.mode]` and hold no mode test of their own. The trainers are imported when a mode
runs, so reading a config imports no network code.

| mode        | trains                                                   | evaluates                   | writes            |
|-------------|----------------------------------------------------------|-----------------------------|-------------------|
| `synthetic` | a network (`Trainer`)                                    | the network (best)          | `checkpoints/`    |
| `physical`  | the scenario's learnable parameters (`PhysicalTrainer`)  | the solver with them (best) | `physical/`       |
| `hybrid`    | both, in cycles exchanging samples (`HybridTrainer`)     | the network (best)          | both, `hybrid/`   |

Adding a mode is one `@MODES.register('name')`ed `Mode` subclass (here or in any module imported before the run);
`tests/test_registries.py` runs it end to end.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from .config import ConfigError, RunConfig
from .registry import Registry


@dataclass
class Outcome:
    """What a mode's training leaves for evaluation and the run's report.

    Attributes:
        model: The model the run evaluates (a `training.TrainedModel`).
        history: Its epochs (`loss.png`, `metrics.json`).
        metrics: Entries for `metrics.json` beside the evaluation (fitted parameters, the cycle log, ...).
        figures: `{file name: draw(path)}` the run also writes.
    """

    model: object
    history: list
    metrics: dict = field(default_factory=dict)
    figures: dict[str, Callable[[Path], None]] = field(default_factory=dict)


class Mode:
    """A way to train on a run's data. Subclasses implement `train` and `load`; `check` refuses configs the mode
    cannot train, before anything is simulated."""

    name: ClassVar[str] = ''
    fits_parameters: ClassVar[bool] = False  # fits the scenario's learnable parameters through its solver

    def check(self, cfg: RunConfig):
        """Raises `ConfigError` (one line naming the key) for configs this mode cannot train."""
        if cfg.model.base == 'coarse_solver' or self.fits_parameters:
            from .physical import check_solver

            need_coarse = not self.fits_parameters
            problem = check_solver(cfg.scenario, cfg.training.backend, need_coarse, cfg.physical.refine)
            if problem:
                key = 'training.mode' if self.fits_parameters else 'model.base'
                raise ConfigError(f"{key}: {problem}")

    def generated(self, cfg: RunConfig) -> dict:
        """What of the training windows comes from a model's predictions: `{'fraction', 'new_state_indices'}`
        (`fraction`: of the network's windows; hybrid also `physical_fraction`, of the physical model's)."""
        return {'fraction': 0.0, 'new_state_indices': []}

    def train(self, cfg: RunConfig, train, val, out: Path) -> Outcome:
        """Trains on `train` (validating on `val`), writing checkpoints under `out`."""
        raise NotImplementedError

    def load(self, cfg: RunConfig, train, run: Path, checkpoint: str = 'best'):
        """The model a finished run (output folder `run`) evaluates, from its checkpoint `checkpoint`."""
        raise NotImplementedError


MODES: Registry[Mode] = Registry('training mode')  # by `training.mode`


def mode_of(cfg: RunConfig) -> Mode:
    """The registered mode of `cfg`, after its `check`.

    Raises:
        ConfigError: The mode is not registered, or cannot train this config (one line naming the key).
    """
    try:
        mode = MODES[MODES.check(cfg.training.mode)]
    except ValueError as err:
        raise ConfigError(f"training.mode: {err}") from None
    mode.check(cfg)
    return mode


@MODES.register('synthetic', make=lambda cls: cls())
class Synthetic(Mode):
    """A network alone (`Trainer`); the run evaluates its best checkpoint."""

    name = 'synthetic'

    def train(self, cfg, train, val, out):
        from .trainer import Trainer

        network = Trainer(train, val, cfg.model, cfg.training, output=out)
        network.fit()
        return Outcome(network.restore_best(), network.history)

    def load(self, cfg, train, run, checkpoint='best'):
        from .trainer import Trainer

        training = dataclasses.replace(cfg.training, progress=False)
        return Trainer(train, None, cfg.model, training).load_checkpoint(Path(run) / 'checkpoints' / checkpoint)


@MODES.register('physical', make=lambda cls: cls())
class Physical(Mode):
    """The scenario's learnable parameters fitted through its solver (`PhysicalTrainer`); the run evaluates the
    solver with its best parameters and reports them (`metrics.json` `parameters`, `fit`; `parameters.png`)."""

    name = 'physical'
    fits_parameters = True

    def train(self, cfg, train, val, out):
        from .physical import PhysicalTrainer

        physical = PhysicalTrainer(train, val, cfg.physical, cfg.training.backend, out / 'physical')
        physical.fit()
        report = physical.report()  # of the whole fit, before the best checkpoint is restored
        return Outcome(physical.restore_best(), physical.history, report, {'parameters.png': physical.plot})

    def load(self, cfg, train, run, checkpoint='best'):
        from .physical import PhysicalTrainer

        folder = Path(run) / 'physical' / 'checkpoints' / checkpoint
        return PhysicalTrainer(train, None, cfg.physical, cfg.training.backend).load_checkpoint(folder)


@MODES.register('hybrid', make=lambda cls: cls())
class Hybrid(Mode):
    """A network and the physical model in cycles exchanging samples (`HybridTrainer`); the run evaluates the
    network's best checkpoint and reports the physical model as `physical` does, plus the cycle log."""

    name = 'hybrid'
    fits_parameters = True

    def generated(self, cfg):
        from .hybrid import new_state_indices

        indices = [i for c in range(cfg.hybrid.cycles) for i in new_state_indices(cfg.hybrid, c)]
        h = cfg.hybrid
        return {'fraction': h.alpha, 'physical_fraction': h.physical_fraction, 'new_state_indices': indices}

    def train(self, cfg, train, val, out):
        from .hybrid import HybridTrainer
        from .physical import PhysicalTrainer
        from .trainer import Trainer

        network = Trainer(train, val, cfg.model, cfg.training, output=out)
        physical = PhysicalTrainer(train, val, cfg.physical, cfg.training.backend, out / 'physical')
        log = HybridTrainer(network, physical, cfg.hybrid, out / 'hybrid').fit()
        report = {**physical.report(), 'hybrid': log}
        return Outcome(network.restore_best(), network.history, report, {'parameters.png': physical.plot})

    def load(self, cfg, train, run, checkpoint='best'):
        return MODES['synthetic'].load(cfg, train, run, checkpoint)
