#!/usr/bin/env bash
# Opens JupyterLab on the repository (notebooks under notebooks/); installs the environment first, as run.sh and
# test.sh do. Jupyter's configuration, data, runtime files and IPython's profile stay inside the virtual environment:
# nothing is written outside the repository and .venv.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export JUPYTER_CONFIG_DIR="$VENV/etc/jupyter-user" JUPYTER_DATA_DIR="$VENV/share/jupyter-user"
export JUPYTER_RUNTIME_DIR="$VENV/share/jupyter-user/runtime" IPYTHONDIR="$VENV/etc/ipython"
export npm_config_cache="$VENV/share/npm-cache"  # JupyterLab asks npm for its version at start-up
exec jupyter lab --ServerApp.root_dir="$ROOT" --LabApp.default_url=/lab/tree/notebooks \
  $([ "$(id -u)" = 0 ] && echo --allow-root) "$@"
