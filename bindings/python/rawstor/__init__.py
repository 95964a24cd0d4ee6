"""Python bindings of rawstor, over its C library (librawstor.so).

>>> import rawstor                                            # doctest: +SKIP
>>> with rawstor.Client() as client:
...     target = client.create("file:///tmp/store", "64M")
...     with client.open(target) as obj:
...         obj.write(0, bytes(4096))
...         data = obj.read(0, 4096)

Failures raise ``OSError`` subclasses chosen by errno (``FileNotFoundError``
for a missing object, ``PermissionError``, ``TimeoutError``, ...) with the
library's message; bad arguments raise ``TypeError`` or ``ValueError``.
See bindings/python/README.md.
"""

from ._client import Client, Layout, Object, ObjectInfo, Options, target_of
from ._errors import InvalidArgumentError
from ._ffi import BLOCK_SIZE, LIBRARY_PATH, VERSION

__version__ = "0.1.0"

__all__ = [
    "BLOCK_SIZE",
    "Client",
    "InvalidArgumentError",
    "LIBRARY_PATH",
    "Layout",
    "Object",
    "ObjectInfo",
    "Options",
    "VERSION",
    "target_of",
]
