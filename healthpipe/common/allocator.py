"""glibc's allocator, asked to keep less: what Python frees is not always given back to the system.

Long-lived servers that read in bursts (the feature server's fill, its request threads) otherwise keep each burst's
peak as resident memory. Both calls are no-ops where the C library is not glibc (musl, macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


@functools.cache  # find_library runs ldconfig: once
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(arenas: int) -> bool:
    """At most `arenas` heaps for all threads. glibc gives threads their own heap (up to 8 per core), and each keeps
    its own peak: a server with a thread per connection held every connection's largest answer. Call it before
    the threads start. True if glibc took it."""
    libc = _glibc()
    return bool(libc and libc.mallopt(_M_ARENA_MAX, arenas) == 1)


def trim() -> None:
    """Give the free memory at the top of every heap back to the system."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
