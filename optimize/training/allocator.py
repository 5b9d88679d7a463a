"""Keep freed memory in the process: training allocates and frees the same large buffers every step.

With glibc's defaults every buffer above a threshold is a fresh `mmap`, returned to the system when
freed and zeroed by the kernel again at the next step: on a CPU that system time grew to about a tenth
of a trial's compute. Raising the thresholds keeps those pages mapped for reuse (bench/RESULTS.md).
Elsewhere than on glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 256 * 1024 * 1024
MMAP_ABOVE_BYTES = 32 * 1024 * 1024
"""glibc's largest allowed mmap threshold on 64-bit systems."""


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed large blocks instead of unmapping them; whether it could."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    settings = ((M_MMAP_THRESHOLD, MMAP_ABOVE_BYTES), (M_TRIM_THRESHOLD, KEEP_BYTES), (M_TOP_PAD, KEEP_BYTES))
    return all(mallopt(option, value) == 1 for option, value in settings)
