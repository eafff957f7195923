"""The C heap of long streamed runs: a fixed glibc mmap threshold, so that it does not fragment and grow.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which blocks of a few
MiB (tiles, activations) come from the heap, where a run that allocates them by the thousand fragments it:
streamed detection training on a 256 Mpx scene peaked at 1.17-1.78 GB over three runs, 1.05 GB with the
threshold fixed at 4 MiB (docs/benchmarks.md, "Detection training at scale"); scene training on 70,000 images
decoded as drawn peaked at 2.58 GB, 1.04 GB with it ("Scene models on many images").
"""

from __future__ import annotations

#: blocks at least this large are mapped (and returned to the system when freed)
MMAP_THRESHOLD = 4 * 2**20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold for this process (unless ``MALLOC_MMAP_THRESHOLD_`` is set); True if set.

    Elsewhere than glibc (macOS, musl, Windows) this does nothing and returns False.
    """
    import ctypes
    import ctypes.util
    import os

    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
    except (OSError, AttributeError):
        return False
