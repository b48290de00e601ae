#!/usr/bin/env bash
# Opens the notebooks in JupyterLab (installs the environment first, as run.sh and test.sh do).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec jupyter lab notebooks/ $([ "$(id -u)" = 0 ] && echo --allow-root) "$@"
