"""YAML run configurations, parsed into frozen dataclasses with errors that name the key path.

A config file has one section per pipeline step; every key is optional and defaults as below:

```yaml
scenario: {name: burgers2d, resolution: [32, 32], steps: 40, seed: 0}   # any Scenario parameter
data: {cache_dir: cache, n_sims: 16, format: h5, split: [0.75, 0.125, 0.125]}
dataset: {n_input: 1, n_targets: 3, hop: 1, batch_size: 16, ...}     # DatasetConfig
model: {architecture: u_net, levels: 3, filters: 16}                    # ModelConfig
training: {backend: torch, mode: synthetic, epochs: 10, ...}           # TrainConfig
physical: {initial: {viscosity: 0.05}, optimizer: lbfgs, epochs: 3}     # PhysicalConfig (modes physical, hybrid)
hybrid: {warmup_epochs: 2, cycles: 2, alpha: 0.2, ...}                 # HybridConfig (mode hybrid)
output: outputs/burgers2d
```
"""

from __future__ import annotations

import dataclasses
import math as pymath
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .architectures import ARCHITECTURES
from .scenarios import SCENARIOS, Scenario


class ConfigError(ValueError):
    """An invalid configuration; the message starts with the file and key path."""


@dataclass(frozen=True)
class DataConfig:
    """Where and how many simulations are cached, and how they are split.

    Attributes:
        cache_dir: Root of the caches (relative paths are relative to the working directory).
        n_sims: Number of simulations.
        format: A registered storage format (`phiml_data.formats.FORMATS`): `'h5'`, `'npz'`, ...
        split: Fractions of sims for train / validation / test (split by simulation).
        split_seed: Seed of the split's permutation.
        noise: Observation noise of the training and validation windows, relative to each frame's rms per field
            (`0.05`: 5 %); fixed per sim and frame (seeded by `split_seed`, sim and frame), so every epoch sees the same
            noisy observations. Test sims stay clean.
    """

    cache_dir: str = 'cache'
    n_sims: int = 16
    format: str = 'h5'
    split: tuple = (0.625, 0.125, 0.25)  # 16 sims: 10 train, 2 validation, 4 test (`evaluation.min_test_sims`)
    split_seed: int = 0
    noise: float = 0.0

    def __post_init__(self):
        if self.n_sims < 1:
            raise ValueError(f"n_sims must be >= 1, got {self.n_sims}")
        from .formats import FORMATS

        registered(self, 'format', FORMATS)
        if not 0 <= self.noise < 1:
            raise ValueError(f"noise must be a fraction in [0, 1), got {self.noise}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"split must be three non-negative fractions summing to 1, got {list(self.split)}")


def registered(config, key: str, registry):
    """Refuses a config field that names no item of `registry`, as `'<Class>.<key>: unknown ...; valid: [...]'` (which
    `parse` reports under the key path, e.g. `training.loss: unknown loss 'l1'; valid: [...]`)."""
    try:
        registry.check(getattr(config, key))
    except ValueError as err:
        raise ValueError(f"{type(config).__name__}.{key}: {err}") from None


def parse(cls, data, path: str = ''):
    """Builds dataclass `cls` from a dict, recursively, checking keys and types.

    Raises:
        ConfigError: `'<path>.<key>: <what is wrong>'`.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(hints[k], v, _join(path, k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        field = re.match(rf'{cls.__name__}\.(\w+):? (.*)', str(err), re.S)  # "Burgers2D.seed must be ..."
        raise ConfigError(
            f"{_join(path, field[1])}: {field[2]}" if field else f"{path or cls.__name__}: {err}"
        ) from None


def parse_scenario(data, path: str = 'scenario') -> Scenario:
    """Builds a scenario from `{'name': ..., **parameters}`."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping such as {{name: burgers2d, resolution: [32, 32]}}, got {data!r}")
    data = dict(data or {})
    name = data.pop('name', 'burgers2d')
    try:
        SCENARIOS.check(name)
    except ValueError as err:
        raise ConfigError(f"{path}.name: {err}") from None
    return parse(SCENARIOS[name], data, path)


def scenario_from_params(params: dict) -> Scenario:
    """Inverse of `Scenario.params()` (e.g. from a cache's `config.json`)."""
    params = dict(params)
    return parse_scenario({'name': params.pop('scenario'), **params})


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


def _convert(hint, value, path):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        for option in options[:-1]:  # the first that accepts the value, e.g. `bool | tuple`
            try:
                return _convert(option, value, path)
            except ConfigError:
                pass
        return _convert(options[-1], value, path)
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, path)
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise ConfigError(f"{path}: expected {hint.__name__}, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if hint is tuple or origin is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return tuple(value)
    return value


def load_yaml(path) -> dict:
    """Reads a YAML file into a dict, with the file name in any error."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"Config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ''
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


@dataclass(frozen=True)
class ModelConfig:
    """The network (the `model:` section of a run config).

    Attributes:
        architecture: A name registered in `phiml_data.architectures`: `'u_net'`, `'res_net'`, `'conv_net'`.
        levels: U-Net levels (every resolution must be divisible by `2 ** (levels - 1)`).
        filters: U-Net base filters, or the width of each res_net / conv_net layer.
        layers: Hidden layers of res_net / conv_net.
        batch_norm: Use batch normalisation.
        activation: Activation function name.
        base: What the network's output is added to at each step: `'persistence'` (the last frame) or
            `'coarse_solver'` (the scenario's own solver on the cache's grid, for ground truth simulated on a finer
            grid: the network learns the coarse solver's correction; the solver runs on the training backend inside
            the graph, see `TrainConfig.solver_gradient`).
        scale_output: What the network's output is multiplied by, so that it learns corrections of unit size:
            `'none'`; `'global'`: the rms one-step error of its base on the training windows, per channel
            (`surrogate.correction_scale`); `'state'`: a size of the base's one-step error that follows the state
            (`surrogate.StateScale`: small for smooth states, large where the state has grid-scale features), fitted
            on the training windows.
        zero_init: Start with the output layer at zero, so that the model starts as its base (`architectures.zero_output`).
    """

    architecture: str = 'u_net'
    levels: int = 3
    filters: int = 16
    layers: int = 2
    batch_norm: bool = False
    activation: str = 'ReLU'
    base: str = 'persistence'
    scale_output: str = 'none'
    zero_init: bool = False

    def __post_init__(self):
        registered(self, 'architecture', ARCHITECTURES)
        if self.base not in ('persistence', 'coarse_solver'):
            raise ValueError(f"base must be 'persistence' or 'coarse_solver', got '{self.base}'")
        if self.scale_output not in ('none', 'global', 'state'):
            raise ValueError(f"scale_output must be 'none', 'global' or 'state', got {self.scale_output!r}")
        if self.levels < 1 or self.filters < 1 or self.layers < 1:
            raise ValueError(
                f"levels, filters and layers must be >= 1, got {self.levels}, {self.filters}, {self.layers}"
            )

    def check_backend(self, backend: str):
        """Refuses architectures that phiml 1.16.1 builds differently (or not at all) on `backend`, so that a config
        means the same network on torch and jax (parameter counts checked: u_net and conv_net agree)."""
        reason = ARCHITECTURES[self.architecture].refuse(self, backend)
        if reason:
            raise ValueError(reason)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the `training:` section of a run config).

    Attributes:
        backend: `'torch'` or `'jax'`.
        mode: A training mode registered in `phiml_data.modes.MODES` (checked there, before anything is simulated):
            `'synthetic'` (a network, `trainer.Trainer`), `'physical'` (the scenario's learnable parameters fitted
            through its solver: `physical.PhysicalTrainer`, the run config's `physical:` section) or `'hybrid'`
            (both in cycles that exchange generated samples: `hybrid.HybridTrainer`, the `hybrid:` section).
        epochs: Training epochs.
        learning_rate: Initial Adam learning rate.
        lr_decay: Learning rate factor applied after each epoch.
        seed: Seed of the network's initial weights.
        threads: Torch intra-op threads while training (1 measured fastest on this project's shared 2-core
            machines; an oversubscribed torch ran 10x slower). `0` leaves torch's own setting.
        reattach_static: Re-attach the static input channels at every rollout step (else they are zeroed after
            the first step).
        solver_gradient: With `model.base: coarse_solver`, let gradients flow through the solver over the
            `dataset.n_targets` unrolled steps of the training rollout (Solver-in-the-Loop "SOL-n", Um et al. 2020:
            the network learns how the solver reacts to its corrections); `False` (default) stops them at the
            solver ("NON"), which measured better on the default config (README: 0.19 vs 0.32 of the coarse
            solver's error over 3 seeds).
        floor_quantile: With `loss: over_base`, the floor below which a window's error is not made relative: this
            quantile of the base's mean square one-step error over the training windows (`None`: 1e-4 of each
            target's mean square).
        loss: A registered loss (`phiml_data.losses.LOSSES`): `'mse'` (mean squared error, normalised units),
            `'relative'` (every window weighs the same) or `'over_base'` (the error over that of the model's base
            alone: where the base is nearly exact, any error is costly); see their docstrings.
        progress: Show progress bars.
    """

    backend: str = 'torch'
    mode: str = 'synthetic'
    epochs: int = 10
    learning_rate: float = 1e-3
    lr_decay: float = 1.0
    seed: int = 0
    threads: int = 1
    reattach_static: bool = True
    loss: str = 'mse'
    floor_quantile: Optional[float] = None
    solver_gradient: bool = False
    progress: bool = True

    def __post_init__(self):
        from .backends import TRAINING_BACKENDS
        from .losses import LOSSES

        registered(self, 'backend', TRAINING_BACKENDS)
        registered(self, 'loss', LOSSES)
        if self.epochs < 0 or self.learning_rate <= 0 or not 0 < self.lr_decay <= 1 or self.threads < 0:
            raise ValueError(
                f"need epochs >= 0, learning_rate > 0, 0 < lr_decay <= 1, threads >= 0; "
                f"got {self.epochs}, {self.learning_rate}, {self.lr_decay}, {self.threads}"
            )
        if self.backend == 'jax' and self.lr_decay != 1:
            raise ValueError(
                "lr_decay must be 1 with backend 'jax': phiml 1.16.1's jax optimizer cannot change its learning rate"
            )


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings (the `evaluation:` section).

    Attributes:
        rollout_steps: Length of the test rollouts (default: the whole trajectory after the initial frames).
        plot_sims: Test sims shown in the field plots.
        animate: Also write `rollout_<field>.gif` (truth and prediction over the rollout) for 2D fields.
        min_test_sims: The run refuses to evaluate on fewer held-out sims (a mean over 1 or 2 sims says little).
    """

    rollout_steps: Optional[int] = None
    plot_sims: int = 1
    animate: bool = False
    min_test_sims: int = 4


DEFAULT_MEMORY_LIMIT = 2**30


@dataclass(frozen=True)
class DatasetConfig:
    """Window and batch settings of a `PhiMLDataset` (the `dataset:` section of a run config).

    Attributes:
        n_input: Frames in the initial state.
        n_targets: Frames to predict (rollout steps).
        hop: Distance between window starts.
        fields: Input fields (default: all of the scenario).
        target_fields: Predicted fields (default: the dynamic input fields).
        batch_size: Windows per batch.
        shuffle: Shuffle the window order each epoch (a function of seed and epoch).
        drop_last: Drop the last partial batch.
        seed: Seed of shuffling and augmentation.
        mode: A window source registered in `_windows.SOURCES` (`'memory'`, `'lazy'`), or `'auto'` (memory if the
            data fits in half of `memory_limit`, else lazy).
        memory_limit: Bytes the dataset may hold; lazy mode checks its batches fit.
        prefetch: Batches assembled ahead in a background thread (0: off). Default `None`: 2 (so training never waits
            for data), or fewer where a lazy dataset's memory limit cannot hold them.
        normalize: Normalise with statistics of the training split.
        augment: Random symmetry transforms (training split only): `True` for every one the scenario allows, or the
            names to use, registered in `augmentation.AUGMENTATIONS` (`'flip'`, `'swap'`, `'shift'`).
    """

    n_input: int = 1
    n_targets: int = 3
    hop: int = 1
    fields: tuple = ()
    target_fields: tuple = ()
    batch_size: int = 16
    shuffle: bool = True
    drop_last: bool = False
    seed: int = 0
    mode: str = 'auto'
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    prefetch: Optional[int] = None
    normalize: bool = True
    augment: bool | tuple = False

    def __post_init__(self):
        for name in ('n_input', 'n_targets', 'hop', 'batch_size'):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mode != 'auto':
            from ._windows import SOURCES

            registered(self, 'mode', SOURCES)
        if (self.prefetch is not None and self.prefetch < 0) or self.memory_limit <= 0:
            raise ValueError(f"prefetch must be >= 0 and memory_limit > 0, got {self.prefetch}, {self.memory_limit}")


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
        refine: The physical model simulates on a grid `refine` times finer than the cache's, from the stored values
            up-sampled (`Scenario.upsample`), and stores its prediction back (`scenarios.step_values`): `None` (default)
            resolves the data as they were simulated (the scenario's own `refine`); `1` runs on the cache's grid,
            where the fitted parameters also absorb that grid's error (an effective coarse-grid value).
    """

    initial: dict = field(default_factory=dict)
    optimizer: str = 'lbfgs'
    iterations: int = 20
    learning_rate: float = 0.1
    lr_decay: float = 1.0
    epochs: int = 3
    refine: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.initial, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and pymath.isfinite(v) and v > 0
            for v in self.initial.values()
        ):
            raise ValueError(f"initial must map parameter names to finite numbers > 0, got {self.initial!r}")
        if self.optimizer not in ('lbfgs', 'adam'):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {self.optimizer!r}")
        if self.refine is not None and self.refine < 1:
            raise ValueError(f"refine must be an integer >= 1 (or null: the scenario's own), got {self.refine}")
        if self.learning_rate <= 0 or not 0 < self.lr_decay <= 1 or self.epochs < 0 or self.iterations < 1:
            raise ValueError(
                f"need learning_rate > 0, 0 < lr_decay <= 1, epochs >= 0, iterations >= 1; got "
                f"{self.learning_rate}, {self.lr_decay}, {self.epochs}, {self.iterations}"
            )


@dataclass(frozen=True)
class HybridConfig:
    """The cycle of a hybrid run (the `hybrid:` section of a run config).

    Attributes:
        warmup_epochs: Network epochs before the first cycle.
        cycles: Cycles of (network with the physical model's samples, physical model with the network's samples).
        network_epochs: Network epochs per cycle.
        physical_epochs: Physical-model epochs per cycle.
        alpha: Fraction of each network training epoch's windows taken from the physical model's samples.
        physical_alpha: Fraction of each physical-model epoch's windows taken from the network's samples; `None`:
            `alpha`. A network that is still far from the data biases the physical fit through them (HYCO weighs the
            two agreement terms separately).
        exchange: Where the exchanged samples start: `'new_states'` (fresh initial conditions from the scenario's own
            distribution each cycle, simulated by the physical model; the network predicts from the same states) or
            `'windows'` (both predict from the real training windows).
        new_states: Fresh initial conditions per cycle (`exchange: new_states`).
    """

    warmup_epochs: int = 2
    cycles: int = 2
    network_epochs: int = 2
    physical_epochs: int = 1
    alpha: float = 0.2
    physical_alpha: float | None = None
    exchange: str = 'new_states'
    new_states: int = 16

    @property
    def physical_fraction(self) -> float:
        """The network's samples' share of each physical-model epoch: `physical_alpha`, or `alpha` if it is `None`."""
        return self.alpha if self.physical_alpha is None else self.physical_alpha

    def __post_init__(self):
        if min(self.warmup_epochs, self.cycles, self.network_epochs, self.physical_epochs) < 0:
            raise ValueError("warmup_epochs, cycles, network_epochs and physical_epochs must be >= 0")
        for name in ('alpha', 'physical_alpha'):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.exchange not in ('new_states', 'windows') or self.new_states < 1:
            raise ValueError(
                f"exchange must be 'new_states' or 'windows' and new_states >= 1, got {self.exchange!r}, {self.new_states}"
            )


@dataclass(frozen=True)
class RunConfig:
    """A whole run: scenario, cache, dataset, model, training, evaluation, output folder."""

    scenario: Scenario
    data: DataConfig
    dataset: DatasetConfig
    model: ModelConfig
    training: TrainConfig
    evaluation: EvalConfig
    output: str = 'outputs/run'
    physical: PhysicalConfig = None
    hybrid: HybridConfig = None

    def data_manager(self):
        """The `DataManager` of this run's cache (`data.cache_dir`, `scenario`, `data.format`)."""
        from .manager import DataManager

        return DataManager(self.data.cache_dir, self.scenario, self.data.format)

    def to_dict(self) -> dict:
        """The resolved configuration as plain data (what `run` writes to `config.yaml`)."""
        sections = ('data', 'dataset', 'model', 'training', 'evaluation', 'physical', 'hybrid')
        d = {k: _plain(getattr(self, k)) for k in sections if getattr(self, k) is not None}
        params = self.scenario.params()
        return {'scenario': {'name': params.pop('scenario'), **params}, **d, 'output': self.output}


def _plain(obj):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(obj).items()}


def parse_run_config(data: dict, source: str = 'config') -> RunConfig:
    """Builds a `RunConfig` from a dict (e.g. parsed YAML); errors name `source` and the key path."""
    sections = {'scenario', 'data', 'dataset', 'model', 'training', 'evaluation', 'output', 'physical', 'hybrid'}
    unknown = sorted(set(data) - sections)
    try:
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown section; valid: {sorted(sections)}")
        training = parse(TrainConfig, data.get('training'), 'training')
        model = parse(ModelConfig, data.get('model'), 'model')
        try:
            model.check_backend(training.backend)
        except ValueError as err:
            raise ConfigError(f"model.architecture: {err}") from None
        if training.epochs < 1:
            raise ConfigError(
                f"training.epochs: a run trains, then evaluates its best checkpoint: need >= 1, got {training.epochs}"
            )
        scenario = parse_scenario(data.get('scenario'))
        physical = parse(PhysicalConfig, data.get('physical'), 'physical')
        _check_learnable(scenario, physical)
        output = data.get('output', RunConfig.output)
        if not isinstance(output, str):
            raise ConfigError(f"output: expected a folder name, got {output!r}")
        return RunConfig(
            scenario,
            parse(DataConfig, data.get('data'), 'data'),
            parse(DatasetConfig, data.get('dataset'), 'dataset'),
            model,
            training,
            parse(EvalConfig, data.get('evaluation'), 'evaluation'),
            output,
            physical,
            parse(HybridConfig, data.get('hybrid'), 'hybrid'),
        )
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _check_learnable(scenario: Scenario, physical: PhysicalConfig):
    """Refuses, before anything is simulated, first guesses of parameters the scenario cannot learn."""
    learnable = sorted(scenario.learnable)
    unknown = sorted(set(physical.initial) - set(learnable))
    if unknown:
        raise ConfigError(
            f"physical.initial.{unknown[0]}: scenario '{scenario.name}' has no learnable parameter '{unknown[0]}'; "
            f"learnable: {learnable}"
        )


def load_run_config(path, overrides: dict = None) -> RunConfig:
    """Reads a YAML run config; `overrides` (nested dict) replace single keys.

    Example:
        >>> cfg = load_run_config('configs/default.yaml', {'data': {'n_sims': 4}})
        >>> cfg.data.n_sims
        4
    """
    data = load_yaml(path)
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and not isinstance(data.get(section) or {}, dict):
            raise ConfigError(f"{path}: {section}: expected a mapping, got {data[section]!r}")
        data[section] = {**(data.get(section) or {}), **values} if isinstance(values, dict) else values
    return parse_run_config(data, str(path))
