"""Storage formats of one cached simulation, registered in one place.

A format is one module in this package that defines a `Format` subclass decorated with `@register`; it is found
and imported here automatically, so adding a format is one new module and nothing else. The manager,
the config validation and the dataset's window reads all go through `FORMATS`.

`FORMATS` maps each name to its `Format`; each module's docstring describes its layout. A format declares whether
it reads partially (`partial_reads`) and whether its loader unpickles (`needs_pickle`: reads then need
`allow_pickle=True` in the call).

Every format stores, per field, the values in canonical dim order `(timeᵇ, xˢ, [yˢ], [vectorᶜ])` plus a xxh3-64 checksum per
frame (static fields: one checksum). The manifest holds a SHA-256 over those checksums, so a reader can verify every frame it
reads against the manifest without hashing the whole file.
"""

import importlib
import pkgutil

from .base import (
    FORMAT_VERSION,
    FORMATS,
    CacheError,
    CacheWarning,
    FieldInfo,
    Format,
    Reader,
    checksum_digest,
    frame_checksums,
    get_format,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != 'base':
        importlib.import_module(f'{__name__}.{_module.name}')

__all__ = [
    'FORMAT_VERSION',
    'CacheError',
    'CacheWarning',
    'FieldInfo',
    'Format',
    'Reader',
    'checksum_digest',
    'frame_checksums',
    'register',
    'FORMATS',
    'get_format',
]
