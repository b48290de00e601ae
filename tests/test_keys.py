"""Cache keys (`phiml_data.keys`, `scenarios.source_digest`): the source digest covers all code a scenario reaches."""

import importlib
import sys
import textwrap
from dataclasses import dataclass
from typing import ClassVar

import pytest

from conftest import SMALL
from phiml_data import Burgers2D, SmokePlume
from phiml_data.keys import cache_key
from phiml_data.scenarios import FieldSpec, covered_code, source_digest

SCENARIO_MODULE = '''
from dataclasses import dataclass
from phiml_data.scenarios import Scenario
from . import numerics
from .numerics import outer


def local_outer(x):
    return local_inner(x)


def local_inner(x):
    return x + LOCAL_CONSTANT


LOCAL_CONSTANT = 1.0


@dataclass(frozen=True)
class Toy(Scenario):
    name = 'toy'

    def step(self, state):
        return numerics.other(outer(local_outer(state)))
'''
NUMERICS = '''
def outer(x):
    return inner(x)


def inner(x):
    return x * 2


def other(x):
    return x
'''


def _digest(tmp_path, scenario_module=SCENARIO_MODULE, numerics=NUMERICS, package='toypkg'):
    (tmp_path / package).mkdir(exist_ok=True)
    (tmp_path / package / '__init__.py').write_text('')
    (tmp_path / package / 'scenario.py').write_text(textwrap.dedent(scenario_module))
    (tmp_path / package / 'numerics.py').write_text(textwrap.dedent(numerics))
    for name in [m for m in sys.modules if m == package or m.startswith(package + '.')]:
        del sys.modules[name]
    sys.path.insert(0, str(tmp_path))
    try:
        importlib.invalidate_caches()
        return source_digest(importlib.import_module(f'{package}.scenario').Toy)
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize(
    'edit',
    [
        lambda s, n: (s, n.replace('x * 2', 'x * 3')),  # a helper of a helper in another module of the package
        lambda s, n: (s, n.replace('return x\n', 'return -x\n')),  # called as `module.function`
        lambda s, n: (s.replace('x + LOCAL', 'x - LOCAL'), n),  # a helper of a helper in the scenario's module
        lambda s, n: (s.replace('LOCAL_CONSTANT = 1.0', 'LOCAL_CONSTANT = 2.0'), n),  # a constant it uses
    ],
)
def test_editing_code_the_scenario_reaches_changes_the_digest(tmp_path, edit):
    before = _digest(tmp_path)
    assert _digest(tmp_path) == before  # reimported unchanged: the same
    assert _digest(tmp_path, *edit(SCENARIO_MODULE, NUMERICS)) != before


def test_the_smoke_key_covers_the_helpers_of_its_helpers():
    covered = covered_code(SmokePlume)
    for name in ('SmokePlume', 'conservative_advection', '_upwind_flux', 'staggered_faces'):
        assert any(c.endswith(f'.{name}') and c.startswith('phiml_data.scenarios.') for c in covered), name
    assert not any('source_digest' in name or 'covered_code' in name for name in covered)
    assert cache_key(SmokePlume()) == cache_key(SmokePlume())


@dataclass(frozen=True)
class Heated(Burgers2D):
    """Another field set."""

    fields: ClassVar[dict] = {**Burgers2D.fields, 'temperature': FieldSpec()}


@dataclass(frozen=True)
class Faster(Burgers2D):
    """Changed physics, same parameters."""

    def step(self, state):
        return super().step(super().step(state))


@dataclass(frozen=True)
class Bumped(Burgers2D):
    version: ClassVar[int] = 2


def test_cache_key_covers_class_fields_code_and_version():
    keys = {
        cache_key(s)
        for s in (
            SMALL,
            Heated(resolution=16, steps=6),
            Faster(resolution=16, steps=6),
            Bumped(resolution=16, steps=6),
        )
    }
    assert len(keys) == 4
    assert SMALL.identity()['class'] == 'phiml_data.scenarios.burgers.Burgers2D'
