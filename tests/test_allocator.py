"""textcls keeps freed memory in the process (textcls/allocator.py): a loop that frees and allocates the same
activations again, as a training step does, stops page-faulting them in afresh."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Five rounds of allocating 30 blocks of 4 MB (120 MB, written, as activations are), then freeing them all; the
# minor page faults of the last four rounds. glibc trims the freed top of its heap by default, so every round
# faults many of its 30,720 pages in again.
ROUNDS = """
import resource, sys
import torch
from textcls.allocator import keep_freed_memory
kept = keep_freed_memory()
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.empty(1 << 20).fill_(1.0) for _ in range(30)]
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, sum(faults[1:]) // 4)
"""


def faults_per_round(keep: bool) -> tuple[bool, int]:
    env = {"TEXTCLS_KEEP_FREED_MEMORY": "1" if keep else "0"}
    out = subprocess.run([sys.executable, "-c", ROUNDS], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings: Linux only")
def test_freed_activations_are_reused_not_faulted_in_again():
    kept, kept_faults = faults_per_round(keep=True)
    off, default_faults = faults_per_round(keep=False)
    assert kept and not off
    # glibc's default faults back in much of what it freed (its thresholds adapt, so how much varies: 8,000 to
    # 30,000 of the 30,720 pages of a round, measured); kept, a small remainder (1,500 to 2,000)
    assert default_faults > 3 * kept_faults
