#!/usr/bin/env bash
# Every test: the unit tests, then the notebooks under strict nbval.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
python -m pytest -n 2 "$@"  # testpaths: tests/ and the doctests of phiml_data/ (pyproject.toml)
python -m pytest -n 2 --dist loadscope --nbval --nbval-current-env notebooks/ -p no:cacheprovider
