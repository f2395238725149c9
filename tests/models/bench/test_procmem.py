"""Process memory figures come from the real process and move when it allocates."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys

from models.bench.procmem import process_memory


def test_own_memory_grows_with_private_allocation() -> None:
    before = process_memory()
    assert before is not None and before.rss_anon > 0 and before.peak >= before.rss_anon
    # A fresh anonymous mapping, every page written: malloc could hand back memory already resident from
    # earlier tests in this process, which would not grow the figure.
    block = mmap.mmap(-1, 64 * 1024 * 1024, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    after = process_memory(os.getpid())
    assert after is not None
    assert after.rss_anon - before.rss_anon > 32 * 1024 * 1024
    assert after.peak >= after.rss_anon
    block.close()


def test_gone_process_reads_as_none() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert process_memory(proc.pid) is None
