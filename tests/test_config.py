"""Run configs (`phiml_data.config`): every section's dataclass lives here, so reading a config needs no ML backend."""

from conftest import run_python


def test_loading_a_run_config_imports_no_network_code():
    code = (
        "import sys; from phiml_data.config import load_run_config\n"
        "cfg = load_run_config('configs/hybrid.yaml')\n"
        "print(cfg.model.architecture, cfg.training.mode, cfg.physical.initial, 'phiml.nn' in sys.modules, 'torch' in sys.modules)"
    )
    assert run_python(code).split() == ['res_net', 'hybrid', "{'viscosity':", '0.05}', 'False', 'False']


def test_first_guesses_are_checked_against_the_scenario_when_the_config_is_read():
    """Issue #28.12: `physical.initial: {viscosity: .inf}` was accepted and `{nu: 0.05}` refused only after simulating."""
    import pytest

    from phiml_data.config import ConfigError, parse_run_config

    scenario = {'name': 'burgers1d', 'resolution': [32], 'scheme': 'spectral'}
    with pytest.raises(
        ConfigError,
        match=r"physical.initial.nu: scenario 'burgers1d' has no learnable parameter 'nu'; learnable: \['viscosity'\]",
    ):
        parse_run_config({'scenario': scenario, 'physical': {'initial': {'nu': 0.05}}})
    with pytest.raises(ConfigError, match=r"physical: initial must map parameter names to finite numbers > 0"):
        parse_run_config({'scenario': scenario, 'physical': {'initial': {'viscosity': float('inf')}}})
