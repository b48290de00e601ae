"""The package's import graph: data flows one way, so no module imports (at module level, inside a function or under
`TYPE_CHECKING`) anything that imports it back."""

import ast

from conftest import ROOT

PACKAGE = ROOT / 'phiml_data'


def _modules() -> dict[str, tuple]:
    found = {}
    for path in PACKAGE.rglob('*.py'):
        parts = list(path.relative_to(ROOT).with_suffix('').parts)
        is_package = parts[-1] == '__init__'
        found['.'.join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """`{module: modules of this package it imports anywhere in its code}`."""
    modules = _modules()
    graph = {m: set() for m in modules}
    for name, (path, is_package) in modules.items():
        here = name.split('.') if is_package else name.split('.')[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = '.'.join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
                elif (node.module or '').startswith('phiml_data'):
                    base = node.module
                else:
                    continue
                targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith('phiml_data')]
            else:
                continue
            for target in targets:
                while target not in modules and '.' in target:
                    target = target.rsplit('.', 1)[0]
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = import_graph()
    graph['phiml_data.scenarios.base'].add('phiml_data.cache')  # e.g. `from ..cache import Cache` inside a method
    assert ['phiml_data.cache', 'phiml_data.scenarios.base'] in [
        sorted(set(c) & {'phiml_data.cache', 'phiml_data.scenarios.base'}) for c in cycles(graph)
    ]


def test_the_config_sits_below_what_it_configures():
    graph = import_graph()
    for trainer in ('phiml_data.trainer', 'phiml_data.physical', 'phiml_data.hybrid', 'phiml_data.dataset'):
        assert 'phiml_data.config' in graph[trainer] and trainer not in graph['phiml_data.config']
