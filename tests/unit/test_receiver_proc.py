"""The receive processes' FEEDBACK policy (l2fast/transfer/receiver_proc.py): when one is sent
and the recvmmsg batch; pure functions, no process or socket."""

from __future__ import annotations

from l2fast.native import datapath as dp
from l2fast.transfer import receiver_proc as rp


def test_feedback_is_due_on_frames_completion_or_interval_only() -> None:
    def due(stop: dp.RxStop, age: float) -> bool:
        return rp._feedback_due(dp.RxRun(stop, [], False), 10.0, 10.0 - age)

    assert due(dp.RxStop.FRAMES, 0.0) and due(dp.RxStop.COMPLETE, 0.0)
    assert due(dp.RxStop.BUDGET, rp.FEEDBACK_INTERVAL_S)
    assert not due(dp.RxStop.BUDGET, rp.FEEDBACK_INTERVAL_S / 2)
    # Full rings alone do not repeat FEEDBACK: the credit cannot grow until the writers drain.
    assert not due(dp.RxStop.RING_FULL, 0.0)


def test_rx_batch_shrinks_with_few_slots() -> None:
    rings = [dp.ShmRing(128, 65600), dp.ShmRing(128, 65600)]
    many = [dp.ShmRing(1024, 9088), dp.ShmRing(1024, 9088)]
    try:
        assert rp._rx_batch(rings) == 16
        assert rp._rx_batch(many) == rp.RX_BATCH
        assert rp._feedback_frames(rings) == 256 // rp.FEEDBACK_SLOT_FRACTION == 128
    finally:
        for r in rings + many:
            r.close()
