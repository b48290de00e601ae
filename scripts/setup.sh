# Sourced by run.sh, test.sh and lab.sh: creates .venv (once) and installs the package with the extras in EXTRAS,
# at the exact versions of constraints.txt (those the README's numbers were produced with).
# The extras are the same list as environment.yml's pip section (tests/test_packaging.py checks this).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="torch,jax,dask,zarr,xarray,bench,notebooks,test"
VENV="${PHIML_DATA_VENV:-$ROOT/.venv}"
STAMP="$VENV/.installed-$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ ! -f "$STAMP" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -c "$ROOT/constraints.txt" -e "$ROOT[$EXTRAS]"  # pinned: see constraints.txt
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
  rm -f "$VENV"/.installed-*; touch "$STAMP"
fi
# Debian's Chromium and its driver, for the notebook test in a real browser (tests/test_jupyterlab.py), and UDUNITS-2,
# which cfchecker's units library loads (tests/test_export.py)
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! ldconfig -p | grep -q libudunits2; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q chromium chromium-driver libudunits2-0 >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver libudunits2-0 >/dev/null; }
  else
    echo "setup: chromium, chromium-driver or libudunits2-0 missing (apt-get install them); their tests skip" >&2
  fi
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
