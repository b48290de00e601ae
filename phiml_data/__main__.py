"""`python -m phiml_data ...`: see `phiml_data.cli`."""

import sys

from .cli import main

sys.exit(main())
