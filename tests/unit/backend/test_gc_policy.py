"""The backend's garbage-collector policy after start-up (backend/gc_policy.py)."""

from __future__ import annotations

import gc

from backend import gc_policy


def test_after_start_freezes_what_is_there_and_raises_the_thresholds():
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        kept = [[n] for n in range(1000)]  # tracked containers alive at start-up
        gc_policy.after_start()
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold() == (gc_policy.GEN0_THRESHOLD, gc_policy.GEN1_THRESHOLD,
                                      gc_policy.GEN2_THRESHOLD)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
