"""phiml_data: a PhiML-native data pipeline for neural PDE surrogates.

The pipeline, one module per step:

    scenarios  ->  manager  ->  dataset  ->  trainer  ->  evaluation
    (simulate)     (cache)      (windows)    (train)      (rollouts)

Everything between the steps is a PhiML `Tensor` with named dims, e.g. a cached trajectory
`Tensor (timeᵇ, xˢ, yˢ, vectorᶜ=x,y)` or a batch `Tensor (batchᵇ, xˢ, yˢ, channelsᶜ=velocity.x,velocity.y)`.
The data modules import without torch; only the trainer uses an ML backend, through `phiml.nn`.

Example:
    >>> from phiml_data import Burgers2D, DataManager, PhiMLDataset
    >>> dm = DataManager('cache', Burgers2D(resolution=32, steps=40))
    >>> dm.generate(8)  # doctest: +SKIP
    >>> ds = PhiMLDataset(dm, n_targets=3)
    >>> batch = next(ds.iterate_batches(16))
"""
from .formats import CacheError
from .config import ConfigError, DataConfig, load_run_config
from .dataset import DatasetConfig, PhiMLDataset, split_sims
from .importers import scenario_from_scene
from .manager import DataManager, SimulationData
from .scenarios import Burgers1D, Burgers2D, Scenario, SmokePlume, simulate, to_field

__all__ = [
    'Scenario', 'Burgers1D', 'Burgers2D', 'SmokePlume', 'simulate', 'to_field',
    'DataManager', 'SimulationData', 'CacheError', 'scenario_from_scene',
    'PhiMLDataset', 'DatasetConfig', 'split_sims',
    'DataConfig', 'ConfigError', 'load_run_config',
    'Trainer', 'TrainConfig', 'ModelConfig',
]


def __getattr__(name):
    """The trainer is imported on first use, so that the data modules never pull in an ML backend."""
    if name in ('Trainer', 'TrainConfig', 'ModelConfig'):
        from . import trainer
        return getattr(trainer, name)
    raise AttributeError(f"module 'phiml_data' has no attribute '{name}'")
