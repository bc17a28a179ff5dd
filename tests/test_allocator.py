"""momawb.allocator: freed training memory stays in the process (glibc), and the opt-out works."""
import json
import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.libc_ver()[0] == "glibc"

# allocate and free a 24 MB tensor (under the 32 MiB threshold), then report what malloc holds free
PROBE = """
import ctypes, ctypes.util, json, sys, torch
from momawb.allocator import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
                                                "fordblks keepcost").split()]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Info
kept = keep_freed_memory()
x = torch.ones(6 * 2 ** 20)
del x
print(json.dumps({"kept": kept, "again": keep_freed_memory(), "free_in_heap": libc.mallinfo2().fordblks}))
"""


def _probe(**env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the setting exists only with glibc's malloc")
def test_freed_tensors_stay_in_the_heap_and_the_opt_out_leaves_malloc_alone():
    kept = _probe()
    assert kept["kept"] and kept["again"]
    assert kept["free_in_heap"] >= 24 * 10 ** 6          # the freed 24 MB block is kept for the next step
    default = _probe(MOMAWB_MALLOC="default")
    assert not default["kept"]
    assert default["free_in_heap"] < 24 * 10 ** 6        # glibc's default: mapped, then returned to the OS
