"""Doctests of `phiml_data` (run with `pytest --doctest-modules phiml_data`): each gets a fresh `tmp` folder and
the package's public names."""

import pytest


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace, tmp_path):
    from phiml import math

    import phiml_data

    doctest_namespace.update(
        {
            name: getattr(phiml_data, name)
            for name in phiml_data.__all__
            if name not in ('Trainer', 'TrainConfig', 'ModelConfig')
        }
    )
    doctest_namespace.update(math=math, tmp=tmp_path)
