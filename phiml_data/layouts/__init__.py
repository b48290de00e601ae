"""Layouts of public PDE benchmark files (PDEBench, The Well): how to read one, as a registered `BenchmarkLayout`.

Used by `phiml_data.importers.import_benchmark` (step 2 of the pipeline: files written elsewhere -> cache). A layout
turns an open HDF5 file into a `description` (trajectories, frames, dt, coordinates and their convention, boundaries
per field and side, parameters) whose structure is checked before any values are read, and reads one trajectory of
one field as an array.

| module     | layout                                                                                   |
|------------|------------------------------------------------------------------------------------------|
| `base`     | `BenchmarkLayout`, the registry, structure checks shared by every layout                  |
| `pdebench` | PDEBench's merged files (`tensor` or `Vx`, `density`, ...; `x-coordinate`; `Nu`)          |
| `the_well` | The Well's files (`t0_fields`, `t1_fields`, `dimensions`, `boundary_conditions`, masks)    |

Adding a layout is one new module here with a `@register`ed subclass of `BenchmarkLayout`; it is found and imported
automatically.
"""

import importlib
import pkgutil

from .base import LAYOUTS, BenchmarkLayout, get_layout, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')

__all__ = ['BenchmarkLayout', 'LAYOUTS', 'register', 'get_layout']
