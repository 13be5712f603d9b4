"""glibc keeps the memory a flareseg process frees, for reuse, instead of handing it back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = """
import os
import sys
import numpy as np
from flareseg.cli.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else None
def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
array = np.ones(20 << 20, np.uint8)  # 20 MB, every page touched
before = resident()
del array
print(applied, (before - resident()) >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_arrays_stay_with_the_process_only_when_tuned():
    glibc = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("MALLOC_")}

    def run(mode):
        applied, returned_mb = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True,
                                              check=True, env=glibc).stdout.split()
        return applied, int(returned_mb)

    applied, returned_mb = run("default")  # glibc maps a 20 MB array anew and unmaps it when freed
    assert applied == "None" and returned_mb >= 19
    applied, returned_mb = run("tuned")
    assert applied == "True" and returned_mb <= 1
