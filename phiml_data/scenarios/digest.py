"""The source digest of a scenario: a hash of all the code it reaches, part of its cache key."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import sys
import textwrap
import threading

_DIGEST_LOCK = threading.Lock()  # CPython's AST constructor is not safe in concurrent threads


def source_digest(cls: type) -> str:
    """SHA-256 of the code that defines scenario class `cls`: 16 hex digits of the hash of `covered_code(cls)`.

    Trade-off: any change of that code (a renamed local, a refactoring with identical results) gives a new cache key
    and so a regeneration. Code outside `covered_code` (other libraries, whose versions the key holds separately)
    is not seen: bump `version` when a change there changes the data, or set `key_source = False` and rely on
    `version` alone.
    """
    with _DIGEST_LOCK:
        return _source_digest(cls)


@functools.lru_cache(maxsize=None)
def _source_digest(cls: type) -> str:
    code = _covered(cls)
    return hashlib.sha256('\n'.join(f'{k}\n{v}' for k, v in sorted(code.items())).encode()).hexdigest()[:16]


def covered_code(cls: type) -> list[str]:
    """Qualified names of the code that `source_digest(cls)` covers, sorted.

    That is every scenario class in the MRO of `cls` and, transitively, every function, class and simple constant
    (number, string, tuple of them) that their code names, directly or as `module.name`, if it is defined in
    `phiml_data` or in the top-level package of the scenario's own module; as syntax trees without docstrings,
    comments or formatting (constants by value).

    Example:
        >>> from phiml_data import SmokePlume
        >>> 'phiml_data.scenarios.finite_volume._upwind_flux' in covered_code(SmokePlume)  # a helper of a helper
        True
    """
    with _DIGEST_LOCK:
        return sorted(_covered(cls))


def _covered(cls: type) -> dict[str, str]:
    code, roots = {}, {'phiml_data'}
    classes = [c for c in cls.__mro__ if hasattr(c, 'identity')]  # the scenario classes (`Scenario.identity`)
    roots |= {c.__module__.split('.')[0] for c in classes}
    todo = list(classes)
    while todo:
        obj = todo.pop()
        name = f'{obj.__module__}.{obj.__qualname__}'
        if name in code:
            continue
        try:
            tree = _parse(obj)
        except ValueError:
            if not inspect.isclass(obj):
                raise
            tree = _members_tree(obj)  # a class defined in a notebook or REPL: its own members instead
        code[name] = _dump(tree)
        for ref_name, ref in _references(tree, sys.modules.get(obj.__module__)):
            if inspect.isfunction(ref) or inspect.isclass(ref):
                if ref.__module__.split('.')[0] in roots and ref.__name__ not in ('source_digest', 'covered_code'):
                    todo.append(ref)
            elif isinstance(ref, (int, float, str, tuple)) and _simple(ref):
                code[f'{obj.__module__}:{ref_name}'] = repr(ref)
    return code


def _references(tree: ast.AST, module) -> list[tuple[str, object]]:
    """`(name, object)` of the module-level names a syntax tree uses: `name` and `module_alias.name`."""
    unwrapped = lambda obj: inspect.unwrap(obj) if callable(obj) else obj
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and hasattr(module, node.id):
            out.append((node.id, unwrapped(getattr(module, node.id))))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = getattr(module, node.value.id, None)
            if inspect.ismodule(base) and hasattr(base, node.attr):
                out.append((f'{node.value.id}.{node.attr}', unwrapped(getattr(base, node.attr))))
    return out


def _simple(value) -> bool:
    """Whether a constant has a repr that is the same in every process (no object addresses)."""
    if isinstance(value, tuple):
        return all(_simple(v) for v in value)
    return isinstance(value, (bool, int, float, str)) or value is None


def _members_tree(cls: type) -> ast.AST:
    """A syntax tree standing for a class whose source file is unavailable: its methods' sources (IPython keeps
    those of functions) and the values of its other attributes, in name order."""
    body = []
    for name, obj in sorted(vars(cls).items()):
        if name.startswith('__'):  # dataclass-generated methods (from the fields, which the parameters cover)
            continue
        function = getattr(obj, '__func__', getattr(obj, 'fget', obj))
        if inspect.isfunction(function):
            body += _parse(function).body
        else:
            body.append(ast.Assign([ast.Name(name)], ast.Constant(repr(obj)), lineno=0))
    return ast.Module(body=body, type_ignores=[])


def _parse(obj) -> ast.AST:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError) as err:
        raise ValueError(
            f"Cannot read the source of {obj.__qualname__} to key its cache ({err}). Define it in a module, or "
            f"set `key_source = False` on the class and bump its `version` whenever its physics change."
        ) from None


def _dump(tree: ast.AST) -> str:
    """The syntax tree as text, without docstrings, positions, comments or formatting."""
    for node in ast.walk(tree):
        body = getattr(node, 'body', None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], 'value', None), ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)
