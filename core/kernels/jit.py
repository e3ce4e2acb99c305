"""numba's options for every kernel of the engine, and the count of what a call compiled.

The on-disk cache folder is settled (:func:`~tilewise.core.jitconfig.configure_cache`) before numba
is imported, and every kernel module takes its decorators from here, so that all of them honour it: no
cache when no folder is writable, instead of numba failing at the first compile.
"""

from __future__ import annotations

from typing import Callable, Iterable, Tuple

from ..jitconfig import configure_cache

#: numba's on-disk cache of the compiled kernels: settled before numba is imported (None: no cache).
CACHE_DIR = configure_cache()

import numba  # noqa: E402 (after the cache folder is settled)

_CACHE = CACHE_DIR is not None

#: a kernel: no GIL held, cached on disk; ``pjit`` runs ``prange`` loops on numba's threads.
jit = numba.njit(nogil=True, cache=_CACHE)
pjit = numba.njit(nogil=True, cache=_CACHE, parallel=True)
#: a small function inlined into its caller's loop (numba IR inlining).
inline_jit = numba.njit(nogil=True, cache=_CACHE, inline="always")
#: ``jit`` allowed to contract, reassociate and take reciprocals (floating-point results may differ in the
#: last bits from strict IEEE order): for kernels whose tests bound their error, not compare bits.
fast_jit = numba.njit(nogil=True, cache=_CACHE, fastmath={"contract", "reassoc", "nsz", "arcp"})


def compiled_and_loaded(kernels: Iterable, calls: Callable[[], None]) -> Tuple[int, int]:
    """Run ``calls()``; return the specializations of ``kernels`` it ``(compiled, loaded from the cache)``."""
    kernels = tuple(kernels)

    def counts():
        return [(sum(k.stats.cache_misses.values()), sum(k.stats.cache_hits.values())) for k in kernels]
    before = counts()
    calls()
    after = counts()
    return (sum(a[0] - b[0] for a, b in zip(after, before)), sum(a[1] - b[1] for a, b in zip(after, before)))
