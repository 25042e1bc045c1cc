"""Bulk transfer: the sans-IO reliability core (ranges, sender window, receiver tracker).

The C data path moves the frames; this package decides which chunk ranges to send, detects loss
and builds FEEDBACK, once per batch and once per FEEDBACK, never per frame (issue 5).
"""

from l2fast.transfer.ranges import ChunkRanges, RangeOwners, ranges_from_indices
from l2fast.transfer.receiver import RxConfig, RxCounters, RxTracker
from l2fast.transfer.reliability import (
    TransferStalled,
    TxConfig,
    TxStats,
    TxWindow,
)

__all__ = [
    "ChunkRanges",
    "RangeOwners",
    "RxConfig",
    "RxCounters",
    "RxTracker",
    "TransferStalled",
    "TxConfig",
    "TxStats",
    "TxWindow",
    "ranges_from_indices",
]
