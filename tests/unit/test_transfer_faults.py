"""The reliability core end to end over the in-memory lossy link, under every fault type.

Each run checks the same contract: every chunk reaches the writer exactly once with the right
bytes, a corrupted frame is never written, nothing is sent past the credit, the receive ring
never overflows, retransmissions stay bounded, and a dead link ends in TransferStalled within a
bounded time instead of a hang.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2fast.transfer.reliability import TransferStalled, TxConfig
from tests.transfer_harness import Faults, Result, Setup, run

SEEDS = range(8)

PROFILES: dict[str, tuple[Faults, dict[str, object]]] = {
    "clean": (Faults(), {}),
    "loss-1%": (Faults(loss=0.01), {}),
    "loss-5%": (Faults(loss=0.05), {}),
    "loss-20%": (Faults(loss=0.20), {}),
    "duplicate-10%": (Faults(duplicate=0.10), {}),
    "reorder-5%": (Faults(reorder=0.05), {}),
    "corrupt-5%": (Faults(corrupt=0.05), {}),
    "feedback-loss-30%": (Faults(feedback_loss=0.30), {}),
    "blackouts": (Faults(blackouts=((0.002, 0.05), (0.06, 0.3))), {}),
    "tiny-credit": (Faults(loss=0.05), {"buffer_chunks": 4, "drain_per_step": 1, "total": 300}),
    "one-chunk-credit": (
        Faults(loss=0.05, duplicate=0.05, reorder=0.05),
        {"buffer_chunks": 1, "drain_per_step": 1, "total": 150},
    ),
    "slow-writer": (Faults(loss=0.02), {"buffer_chunks": 64, "drain_per_step": 8}),
    "kernel-drops": (Faults(rx_frames_per_step=12), {"chunks_per_step": 64}),
    "everything": (
        Faults(
            loss=0.05,
            duplicate=0.02,
            reorder=0.02,
            corrupt=0.01,
            feedback_loss=0.1,
            blackouts=((0.003, 0.02),),
        ),
        {"buffer_chunks": 128, "drain_per_step": 24},
    ),
}


def assert_delivered_exactly_once(res: Result, setup: Setup) -> None:
    """The contract every completed run must meet."""
    assert res.stalled is None, res.stalled
    assert res.completed, f"not done after {res.elapsed:.3f} s of virtual time"
    assert res.rx.complete and res.tx.done
    assert setup.total is not None
    held_before = {k for s, e in setup.have for k in range(s, e)}
    assert set(res.delivered) == set(range(setup.total)) - held_before
    assert all(times == 1 for times in res.delivered.values())
    assert res.bad_payloads == 0  # no corrupted payload was ever written
    assert res.over_credit == [] and res.rx.counters.over_credit == 0
    assert res.overflow_drops == 0  # the credit kept the ring from overflowing
    assert res.max_ring <= setup.buffer_chunks


def assert_retransmissions_bounded(res: Result) -> None:
    """Resends are explained by frames that went missing or came very late, or by a lost
    FEEDBACK that left a sender with (nearly) no credit blind until its timer sent a probe."""
    retx = res.tx.stats.retransmitted_chunks
    bound = 3 * res.wire_losses + res.reordered + res.feedbacks_lost + 20
    assert retx <= bound, (retx, res.wire_losses, res.reordered, res.feedbacks_lost)


#: How the sender sends: a batch from the window every step, or streaming bursts of up to 20 or
#: 200 steps (2 or 20 ms) that the window learns of only when they end (csrc/txstream.c).
SENDERS = {"batches": 0, "bursts": 20, "long-bursts": 200}


@pytest.mark.parametrize("sender", SENDERS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_fault_profile_delivers_exactly_once(profile: str, seed: int, sender: str) -> None:
    faults, overrides = PROFILES[profile]
    setup = dataclasses.replace(Setup(seed=seed, burst_steps=SENDERS[sender]), **overrides)  # type: ignore[arg-type]
    res = run(setup, faults)
    if SENDERS[sender]:
        assert res.bursts > 0 and res.streamed_chunks > 0
    assert_delivered_exactly_once(res, setup)
    assert_retransmissions_bounded(res)
    if faults.corrupt:
        assert res.corrupted > 0 and res.crc_dropped > 0
    clean_wire = faults.loss == faults.corrupt == faults.reorder == 0 and not faults.blackouts
    if clean_wire and faults.rx_frames_per_step is None:
        assert res.tx.stats.retransmitted_chunks <= 20  # only timer probes, if any


@pytest.mark.parametrize("loss_percent", range(0, 21, 2))
def test_loss_sweep(loss_percent: int) -> None:
    for seed in range(4):
        setup = Setup(seed=100 + seed, total=800)
        res = run(setup, Faults(loss=loss_percent / 100, reorder=0.01, duplicate=0.01))
        assert_delivered_exactly_once(res, setup)
        assert_retransmissions_bounded(res)
        if loss_percent == 0:
            assert res.tx.stats.lost_chunks <= res.reordered


def test_loss_only_has_no_spurious_retransmissions() -> None:
    for seed in SEEDS:
        res = run(Setup(seed=seed), Faults(loss=0.05))
        assert res.rx.counters.duplicates == 0
        assert res.tx.stats.retransmitted_chunks == res.wire_losses
        assert res.tx.stats.spurious_retransmits == 0 and res.tx.stats.spurious_losses == 0


def test_duplicates_are_counted_not_delivered_twice() -> None:
    res = run(Setup(seed=3), Faults(duplicate=0.3))
    assert res.rx.counters.duplicates >= res.duplicated > 0
    assert all(times == 1 for times in res.delivered.values())


def test_many_holes_beyond_64_sack_ranges() -> None:
    setup = Setup(seed=7, total=6000, buffer_chunks=4096, chunks_per_step=128)
    res = run(setup, Faults(loss=0.2))
    assert res.rx.counters.feedbacks > 0
    assert_delivered_exactly_once(res, setup)
    assert_retransmissions_bounded(res)


def test_blackout_shorter_than_the_stall_timeout_recovers() -> None:
    setup = Setup(seed=1, tx_config=TxConfig(stall_timeout=5.0, max_rto=0.5))
    res = run(setup, Faults(blackouts=((0.003, 3.0),)))
    assert_delivered_exactly_once(res, setup)
    assert res.tx.stats.probes >= 3
    assert res.elapsed < 3.0 + 0.5 + 0.1  # resumes within one backed-off timeout


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "faults",
    [Faults(blackouts=((0.003, math.inf),)), Faults(feedback_loss=1.0)],
    ids=["link-dead", "feedback-dead"],
)
def test_dead_link_ends_in_stall_not_hang(seed: int, faults: Faults) -> None:
    cfg = TxConfig(stall_timeout=2.0, max_rto=0.25)
    res = run(Setup(seed=seed, tx_config=cfg, max_time=60.0), faults)
    assert isinstance(res.stalled, TransferStalled)
    assert res.tx.stalled and not res.completed
    assert res.elapsed <= 0.003 + 2.0 + 0.25 + 0.01
    assert res.tx.stats.probes <= 2.0 / 0.25 + 8  # backed off, not a flood
    assert all(times == 1 for times in res.delivered.values())
    assert res.stalled.idle >= 2.0


def test_resume_sends_only_the_missing_chunks() -> None:
    have = ((0, 100), (300, 700), (1000, 1400))
    setup = Setup(seed=5, have=have)
    res = run(setup, Faults(loss=0.05))
    assert_delivered_exactly_once(res, setup)
    held = {k for s, e in have for k in range(s, e)}
    assert not held & set(res.sent)
    assert res.tx.stats.new_chunks_sent == 1500 - len(held)
    assert res.rx.counters.duplicates == 0


def test_resume_unknown_to_the_sender_still_writes_each_chunk_once() -> None:
    have = ((0, 700),)
    setup = Setup(seed=6, have=have, sender_knows_have=False)
    res = run(setup, Faults(loss=0.02))
    assert_delivered_exactly_once(res, setup)
    assert res.rx.counters.duplicates >= 700 - res.wire_losses


def test_kernel_drops_slow_the_sender_down() -> None:
    setup = Setup(seed=2, chunks_per_step=64, total=3000)
    res = run(setup, Faults(rx_frames_per_step=12))
    assert_delivered_exactly_once(res, setup)
    rate = res.tx.pacing_rate
    assert rate is not None and res.tx.stats.rate_cuts >= 1
    assert rate < 64 / setup.step  # below what the sender could push
    assert res.kernel_drops < 3000 / 2  # pacing stopped most of the overrun


def test_open_ended_bench_mode() -> None:
    setup = Setup(seed=4, total=None, stop_after_chunks=3000)
    res = run(setup, Faults(loss=0.03, duplicate=0.01))
    assert not res.completed and res.stalled is None
    assert res.rx.count >= 3000
    assert all(times == 1 for times in res.delivered.values())
    assert res.over_credit == [] and res.bad_payloads == 0


def test_runs_are_deterministic_per_seed() -> None:
    faults = PROFILES["everything"][0]
    a = run(Setup(seed=9), faults)
    b = run(Setup(seed=9), faults)
    assert (a.elapsed, a.tx.stats, a.frames_sent) == (b.elapsed, b.tx.stats, b.frames_sent)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    loss=st.floats(0, 0.2),
    duplicate=st.floats(0, 0.1),
    reorder=st.floats(0, 0.1),
    corrupt=st.floats(0, 0.05),
    feedback_loss=st.floats(0, 0.5),
    buffer_chunks=st.integers(1, 600),
    chunks_per_step=st.integers(1, 64),
    latency=st.floats(0.00005, 0.002),
    burst_steps=st.sampled_from([0, 1, 7, 50]),
)
def test_any_mix_of_faults_delivers_exactly_once(
    seed: int,
    loss: float,
    duplicate: float,
    reorder: float,
    corrupt: float,
    feedback_loss: float,
    buffer_chunks: int,
    chunks_per_step: int,
    latency: float,
    burst_steps: int,
) -> None:
    faults = Faults(loss, duplicate, reorder, corrupt=corrupt, feedback_loss=feedback_loss)
    setup = Setup(
        total=200,
        seed=seed,
        buffer_chunks=buffer_chunks,
        drain_per_step=max(1, buffer_chunks // 4),
        chunks_per_step=chunks_per_step,
        latency=latency,
        burst_steps=burst_steps,
    )
    res = run(setup, faults)
    assert_delivered_exactly_once(res, setup)
    assert_retransmissions_bounded(res)
