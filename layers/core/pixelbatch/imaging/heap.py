"""The item worker's heap: an image's large buffers reuse the pages the last image touched.

glibc serves a block above its mmap threshold (128 KB at first, raised as such blocks are freed)
with a fresh mapping and unmaps it on free, and it returns the heap's free top to the kernel.
Every image then faults in and zeroes its buffers again, page by page: libjpeg's coefficient
arrays (24 MB for a 12 MP photo's luma when Huffman tables are optimised), the encoded file,
a decoded grey photo or a 2560 px frame. Kept in the heap, they are reused instead: basic_clean
takes about a quarter less time. The heap then stays at its peak between images, which a Lambda
function pays for anyway.
"""

from __future__ import annotations

import ctypes

# mallopt's parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap. glibc 2.26 (Amazon Linux 2, under the python3.11
# runtime) refuses a threshold above 32 MB, half its 64 MB heap; newer ones accept more, so a
# larger value would work here and silently not on AWS. A 12 MP RGB array (36 MB) stays above.
MMAP_THRESHOLD = 32 * 1024 * 1024
# The free top of the heap is kept up to this size rather than handed back.
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Serve blocks up to MMAP_THRESHOLD from the heap and keep freed ones there; False where
    the C library has no such setting (not glibc) or refuses it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
