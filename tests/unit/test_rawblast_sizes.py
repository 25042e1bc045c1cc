"""The raw blast's cache budget: how many frames each end cycles through (l2fast.rawblast)."""

from __future__ import annotations

from l2fast import native
from l2fast.rawblast import CACHE_BYTES, RX_SLOTS, TX_BATCH, frames_within


def test_small_frames_keep_the_full_batch_and_arena() -> None:
    assert frames_within(native.TxBatch.stride_for(1514), TX_BATCH) == TX_BATCH
    assert frames_within(native.TxBatch.stride_for(9014), TX_BATCH) == TX_BATCH
    assert frames_within(1514 + 64, RX_SLOTS) == RX_SLOTS


def test_large_frames_fit_the_budget_but_never_fewer_than_8() -> None:
    tx = native.TxBatch.stride_for(65549)
    assert tx % 4096 == 0 and tx >= 65549
    n = frames_within(tx, TX_BATCH)
    assert n == CACHE_BYTES // tx == 15
    assert n * tx <= CACHE_BYTES
    assert frames_within(9078, RX_SLOTS) * 9078 <= CACHE_BYTES < RX_SLOTS * 9078
    assert frames_within(CACHE_BYTES, TX_BATCH) == 8
