#!/usr/bin/env bash
# The main job on the small default configuration: simulate -> cache -> dataset -> train -> evaluate.
# Usage: bash scripts/run.sh [--config configs/other.yaml] [more options of `phiml-data run`]
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
python -m phiml_data run --config configs/default.yaml "$@"
