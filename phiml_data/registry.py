"""`Registry`: the one mechanism behind every variation point (scenarios, formats, layouts, augmentations, losses,
architectures, window sources, training backends, training modes).

A registry maps names to items in registration order, refuses a second item under a name that is taken (so a new
module can never silently replace, or later delete, another one), and words every "unknown name" error the same way,
listing the valid names. Adding a variant is one decorated definition in one module; the registry's contract test in
`tests/test_registries.py` then runs it.

Example:
    >>> COLOURS = Registry('colour')
    >>> @COLOURS.register('red')
    ... def red():
    ...     return '#f00'
    >>> list(COLOURS), COLOURS['red']()
    (['red'], '#f00')
    >>> COLOURS.check('blue')
    Traceback (most recent call last):
    ...
    ValueError: unknown colour 'blue'; valid: ['red']
    >>> COLOURS.register('red')(lambda: '#e00')
    Traceback (most recent call last):
    ...
    ValueError: a colour named 'red' is registered already (phiml_data.registry.red); choose another name
"""

from __future__ import annotations

import contextlib
from typing import Callable, Generic, Iterator, Mapping, TypeVar

T = TypeVar('T')


class Registry(Mapping[str, T], Generic[T]):
    """Named items of one kind, in registration order.

    Args:
        kind: What the items are, for messages (`'scenario'`, `'loss'`, ...).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def add(self, name: str, item: T, origin: object = None) -> T:
        """Registers `item` under `name`.

        Raises:
            ValueError: `name` is taken (names the module and object that took it) or is not a non-empty string.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._items:
            article = 'an' if self.kind[0] in 'aeiou' else 'a'
            raise ValueError(
                f"{article} {self.kind} named '{name}' is registered already ({self._origins[name]}); choose another name"
            )
        origin = origin if origin is not None else item
        self._items[name] = item
        self._origins[name] = f"{getattr(origin, '__module__', '?')}.{getattr(origin, '__qualname__', name)}"
        return item

    def register(self, name: str = None, make: Callable = None):
        """Decorator: registers the decorated object under `name` (default: its `name` attribute), as
        `make(obj)` if given (e.g. an instance of the decorated class); returns the object itself."""

        def decorate(obj):
            self.add(name or obj.name, make(obj) if make else obj, obj)
            return obj

        return decorate

    @contextlib.contextmanager
    def temporarily(self, name: str, item: T):
        """Registers `item` for the block only (tests and examples), then removes exactly that entry."""
        self.add(name, item)
        try:
            yield item
        finally:
            del self._items[name], self._origins[name]

    def unknown(self, name) -> str:
        """The message for a name that is not registered."""
        return f"unknown {self.kind} {name!r}; valid: {list(self._items)}"

    def check(self, name) -> str:
        """Returns `name` if it is registered.

        Raises:
            ValueError: `unknown(name)`.
        """
        if not isinstance(name, str) or name not in self._items:
            raise ValueError(self.unknown(name))
        return name

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise KeyError(self.unknown(name)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self):
        return f"Registry({self.kind!r}: {list(self._items)})"
