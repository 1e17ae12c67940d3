"""Keep freed memory in the process, so that a CPU training step does not page-fault its activations in afresh.

PyTorch's CPU tensors come from glibc's malloc. glibc gives large freed blocks back to the OS (munmap, or trimming
the top of the heap), and a training step frees and allocates the same activations every step, so every step
faults the same memory back in, a zeroed 4 KiB page at a time: ~80,000 page faults per step of bert-tiny at 512 tokens
× 32 (BENCHMARKS.md), and more than linearly many at long lengths. GPU allocators cache for this reason, and
PyTorch's CPU performance guide suggests jemalloc or tcmalloc; glibc's own settings do the same without a library
to preload: blocks up to 32 MB (glibc's largest mmap threshold) come from the heap, and the heap is not trimmed.
The cost: the process keeps its peak memory until it exits, which a training or serving process reaches anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 512 << 20))

_kept = False


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory in the process (once per process). True when it took the settings;
    False where there is no glibc (macOS, Windows, musl), or TEXTCLS_KEEP_FREED_MEMORY=0 says not to, and nothing
    changed. The textcls command calls it first thing."""
    global _kept
    if _kept or not sys.platform.startswith("linux") or os.environ.get("TEXTCLS_KEEP_FREED_MEMORY", "1") == "0":
        return _kept
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _kept = all(mallopt(param, value) == 1 for param, value in SETTINGS)
    return _kept
