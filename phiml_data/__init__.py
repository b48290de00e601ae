"""phiml_data: a PhiML-native data pipeline for neural PDE surrogates.

The pipeline, one module per step:

    scenarios  ->  manager  ->  dataset  ->  trainer / physical / hybrid  ->  evaluation
    (simulate)     (cache)      (windows)    (network, PDE parameters, both)  (rollouts)

Everything between the steps is a PhiML `Tensor` with named dims, e.g. a cached trajectory
`Tensor (timeᵇ, xˢ, yˢ, vectorᶜ=x,y)` or a batch `Tensor (batchᵇ, xˢ, yˢ, channelsᶜ=velocity.x,velocity.y)`.
The data modules import without torch; only the trainer uses an ML backend, through `phiml.nn`.

Example:
    >>> from phiml_data import Burgers2D, DataManager, PhiMLDataset
    >>> dm = DataManager(tmp, Burgers2D(resolution=16, steps=8))  # tmp: any folder
    >>> dm.generate(4, progress=False)
    [0, 1, 2, 3]
    >>> batch = next(PhiMLDataset(dm, n_targets=3).iterate_batches(16))
    >>> batch['targets'].shape.names, batch['targets'].shape.get_item_names('channels')
    (('batch', 'time', 'x', 'y', 'channels'), ('velocity.x', 'velocity.y'))
"""

from .config import ConfigError, DataConfig, ModelConfig, TrainConfig, load_run_config
from .dataset import DatasetConfig, PhiMLDataset
from .formats import CacheError, CacheWarning
from .hybrid import HybridConfig, HybridTrainer
from .importers import scenario_from_scene
from .manager import DataManager, SimulationData
from .physical import PhysicalConfig, PhysicalTrainer
from .scenarios import Burgers1D, Burgers2D, Scenario, SmokePlume, simulate, to_field
from .splits import split_sims

__all__ = [
    'Scenario',
    'Burgers1D',
    'Burgers2D',
    'SmokePlume',
    'simulate',
    'to_field',
    'DataManager',
    'SimulationData',
    'CacheError',
    'CacheWarning',
    'scenario_from_scene',
    'PhiMLDataset',
    'DatasetConfig',
    'split_sims',
    'DataConfig',
    'ConfigError',
    'load_run_config',
    'PhysicalTrainer',
    'PhysicalConfig',
    'HybridTrainer',
    'HybridConfig',
    'Trainer',
    'TrainConfig',
    'ModelConfig',
]


def __getattr__(name):
    """The trainer is imported on first use, so that the data modules never pull in an ML backend."""
    if name == 'Trainer':
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'phiml_data' has no attribute '{name}'")
