# Sourced by run.sh and test.sh: creates .venv (once) and installs the package with the extras in EXTRAS.
# The extras are the same list as environment.yml's pip section (tests/test_packaging.py checks this).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="torch,jax,dask,zarr,xarray,bench,test"
VENV="${PHIML_DATA_VENV:-$ROOT/.venv}"
STAMP="$VENV/.installed-$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ ! -f "$STAMP" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$EXTRAS]"
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
  rm -f "$VENV"/.installed-*; touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
