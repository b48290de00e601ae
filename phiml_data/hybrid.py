"""Hybrid training: a network and the physical model trained in cycles, each learning also from the other's
predictions (the HYCO scheme).

Step 4 of the pipeline (scenarios -> manager -> dataset -> trainer). After a warm-up of the network, every cycle:

1. the physical model (`PhysicalTrainer`) predicts every training window; those predictions are mixed into the
   network's training windows with weight `alpha` (`PhiMLDataset(generated=..., alpha=...)`), and the network trains;
2. the network predicts every training window; those predictions are mixed into the physical model's windows with
   weight `alpha`, and the physical model fits its parameters.

Generated samples enter only the training windows: validation and test datasets never see them. A checkpoint after
the warm-up and after every cycle holds both models, and a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from phiml import math
from phiml.math import Tensor, batch

from .dataset import PhiMLDataset
from .physical import PhysicalTrainer


@dataclass(frozen=True)
class HybridConfig:
    """The cycle of a hybrid run (the `hybrid:` section of a run config).

    Attributes:
        warmup_epochs: Network epochs before the first cycle.
        cycles: Cycles of (network with the physical model's samples, physical model with the network's samples).
        network_epochs: Network epochs per cycle.
        physical_epochs: Physical-model epochs per cycle.
        alpha: Fraction of each training epoch's windows taken from the other model's predictions.
    """

    warmup_epochs: int = 2
    cycles: int = 2
    network_epochs: int = 2
    physical_epochs: int = 1
    alpha: float = 0.2

    def __post_init__(self):
        if min(self.warmup_epochs, self.cycles, self.network_epochs, self.physical_epochs) < 0:
            raise ValueError("warmup_epochs, cycles, network_epochs and physical_epochs must be >= 0")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")


def predictions(model, dataset: PhiMLDataset) -> tuple[Tensor, Tensor]:
    """`model`'s rollout from every window of `dataset` (in window order, no augmentation), as generated samples.

    Args:
        model: Anything with `rollout(initial_state, steps)` in `dataset`'s normalised units (`Trainer`,
            `PhysicalTrainer`).

    Returns:
        `(initial_state, targets)` in physical units with `windowᵇ` for `batchᵇ`: `PhiMLDataset(generated=...)`.
        Held in memory: every training window with its `n_targets` predicted frames.
    """
    plain = PhiMLDataset(
        dataset.manager, dataset.sims, dataset.config, stats=dataset.stats, shuffle=False, augment=False, prefetch=0
    )
    initial, targets = [], []
    with model.backend, model.surrogate.eval_mode():
        for b in plain.iterate_batches(epoch=0):
            pred = math.stop_gradient(model.rollout(b['initial_state'], plain.layout.n_targets))
            initial.append(plain.denormalize(b['initial_state']))
            targets.append(math.convert(plain.denormalize(pred), b['initial_state'].default_backend))
    as_windows = lambda parts: math.rename_dims(math.concat(parts, 'batch'), 'batch', batch('window'))
    return as_windows(initial), as_windows(targets)


class HybridTrainer:
    """Warm-up, then cycles of network and physical training that exchange generated samples.

    Args:
        network: The network's `Trainer` (its `train` dataset: the real training windows).
        physical: The `PhysicalTrainer` on the same training windows.
        config: `HybridConfig`.
        output: Folder for `hybrid.json` (cycle, phase log); the trainers keep their own checkpoints.
    """

    def __init__(self, network, physical: PhysicalTrainer, config=HybridConfig(), output=None):
        self.network, self.physical, self.config = network, physical, config
        self.real = network.train
        self.output = Path(output) if output else None
        self.cycle, self.log = 0, []

    def mixed(self, generated: tuple[Tensor, Tensor]) -> PhiMLDataset:
        """The real training windows with `generated` mixed in at `config.alpha`."""
        real = self.real
        return PhiMLDataset(
            real.manager,
            real.sims,
            real.config,
            stats=real.stats,
            generated=generated,
            alpha=self.config.alpha,
            shard=real.shard,
        )

    def fit(self) -> list[dict]:
        """Runs (or continues) warm-up and cycles; returns the log of phases."""
        c = self.config
        if self.network.epoch < c.warmup_epochs:
            self.network.fit(c.warmup_epochs)
            self._record('warmup')
        while self.cycle < c.cycles:
            self.network.train = self.mixed(predictions(self.physical, self.real))
            self.network.fit(c.warmup_epochs + (self.cycle + 1) * c.network_epochs)
            self.physical.train = self.mixed(predictions(self.network, self.real))
            self.physical.fit((self.cycle + 1) * c.physical_epochs)
            self.cycle += 1
            self._record(f'cycle {self.cycle}')
        return self.log

    def _record(self, phase: str):
        self.log.append(
            {
                'phase': phase,
                'network_epoch': self.network.epoch,
                'physical_epoch': self.physical.epoch,
                'params': self.physical.params(),
                'network_train_loss': self.network.history[-1]['train_loss'] if self.network.history else None,
                'physical_train_loss': self.physical.history[-1]['train_loss'] if self.physical.history else None,
                'generated_per_epoch': self.network.train.n_generated() if self.network.train is not self.real else 0,
            }
        )
        if self.output is not None:
            self.output.mkdir(parents=True, exist_ok=True)
            (self.output / 'hybrid.json').write_text(
                json.dumps({'cycle': self.cycle, 'log': self.log, 'config': asdict(self.config)}, indent=1)
            )
            self.network.save_checkpoint(self.output / 'network')
            self.physical.save_checkpoint(self.output / 'physical')

    def resume(self, path) -> HybridTrainer:
        """Continues from the checkpoint a run with the same configs wrote to `path` (its `output`)."""
        path = Path(path)
        state = json.loads((path / 'hybrid.json').read_text())
        self.network.load_checkpoint(path / 'network')
        self.physical.load_checkpoint(path / 'physical')
        self.cycle, self.log = state['cycle'], state['log']
        return self
