"""Freed training buffers stay mapped for reuse instead of being zeroed by the kernel again."""

from __future__ import annotations

import subprocess
import sys

CHURN = """
import resource, sys
import numpy as np
from optimize.training.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # a step: its activations (10 buffers of 8 MiB) allocated, then all freed
    buffers = [np.ones(2 * 1024 * 1024, np.float32) for _ in range(10)]
    del buffers
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> tuple[str, int]:
    output = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True).stdout
    kept, faults = output.split()
    return kept, int(faults)


def test_large_buffers_are_reused_without_new_page_faults():
    kept, with_keeping = page_faults("keep")
    _, by_default = page_faults("default")
    assert kept == "True"
    assert by_default > 20 * 2048  # freed memory goes back to the kernel, and is faulted in anew every step
    assert with_keeping < by_default / 10
