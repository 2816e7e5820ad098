"""PeakMemory: the peak resident memory of a block, without touching the process's own peak."""

import resource
import time

import numpy as np

from sci2i.utils.runtime import PeakMemory


def test_peak_memory_sees_a_transient_allocation_and_leaves_ru_maxrss_alone():
    high = np.ones(600 * 2**20 // 8)  # a process peak above anything the blocks below reach
    del high
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with PeakMemory(interval=0.01) as outer:
        with PeakMemory(interval=0.01) as inner:
            block = np.ones(400 * 2**20 // 8)  # 400 MB, resident (written)
            time.sleep(0.1)
            del block
        after_free = PeakMemory._resident_gb()
    assert inner.peak["rss_gb"] >= after_free + 0.3  # the 400 MB were seen, though freed before the end
    assert outer.peak["rss_gb"] >= inner.peak["rss_gb"] - 0.01
    # the kernel's high-water mark (what /usr/bin/time reports) is never reset to a lower value
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >= before
