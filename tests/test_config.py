"""Run configs (`phiml_data.config`): every section's dataclass lives here, so reading a config needs no ML backend."""

from conftest import run_python


def test_loading_a_run_config_imports_no_network_code():
    code = (
        "import sys; from phiml_data.config import load_run_config\n"
        "cfg = load_run_config('configs/hybrid.yaml')\n"
        "print(cfg.model.architecture, cfg.training.mode, cfg.physical.initial, 'phiml.nn' in sys.modules, 'torch' in sys.modules)"
    )
    assert run_python(code).split() == ['res_net', 'hybrid', "{'viscosity':", '0.05}', 'False', 'False']
