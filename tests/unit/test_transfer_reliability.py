"""TxWindow and RxTracker, step by step: credit, loss detection, RTT, timeouts, pacing, FEEDBACK."""

from __future__ import annotations

import pytest

from l2fast.transfer.receiver import RxConfig, RxTracker
from l2fast.transfer.reliability import TransferStalled, TxConfig, TxWindow, coalesce_feedback
from l2fast.wire.constants import MAX_SACK_RANGES
from l2fast.wire.frames import Feedback

Ranges = tuple[tuple[int, int], ...]


def fb(cum: int, credit: int, highest: int, ranges: Ranges = (), drops: int = 0) -> Feedback:
    """A FEEDBACK as the receiver would send it."""
    return Feedback(cum_ack=cum, credit=credit, highest=highest, kernel_drops=drops, ranges=ranges)


# -- sending --------------------------------------------------------------------------------


def test_new_data_stops_at_credit_and_total() -> None:
    tx = TxWindow(100, credit=30)
    assert tx.next_batch(0.0, 20) == [(0, 20)]
    assert tx.next_batch(0.0, 20) == [(20, 30)]
    assert tx.next_batch(0.0, 20) == []  # credit exhausted
    tx.on_feedback(fb(30, 200, 30), 0.001)
    assert tx.next_batch(0.001, 1000) == [(30, 100)]  # the total bounds it now
    assert tx.next_batch(0.001, 1000) == []
    tx.on_feedback(fb(100, 200, 100), 0.002)
    assert tx.done and tx.next_timer() is None


def test_resume_sends_only_missing_chunks() -> None:
    tx = TxWindow(100, credit=100, have=[(0, 10), (20, 90)])
    assert tx.cum_ack == 10 and tx.acked_chunks == 80
    assert tx.next_batch(0.0, 15) == [(10, 20), (90, 95)]
    assert tx.next_batch(0.0, 15) == [(95, 100)]
    tx.on_feedback(fb(100, 100, 100), 0.001)
    assert tx.done and tx.stats.new_chunks_sent == 20


def test_open_ended_until_total_is_set() -> None:
    tx = TxWindow(None, credit=50)
    assert tx.next_batch(0.0, 100) == [(0, 50)]
    tx.on_feedback(fb(50, 80, 50), 0.001)
    assert not tx.done
    tx.set_total(60)
    assert tx.next_batch(0.001, 100) == [(50, 60)]
    tx.on_feedback(fb(60, 80, 60), 0.002)
    assert tx.done
    with pytest.raises(ValueError):
        tx.set_total(10)


def test_feedback_beyond_what_was_sent_is_ignored() -> None:
    tx = TxWindow(1000, credit=1000)
    tx.next_batch(0.0, 100)
    assert tx.on_feedback(fb(5000, 1000, 5000, ((6000, 7000),)), 0.001) == 100
    assert tx.cum_ack == 100 and not tx.done


def test_credit_never_shrinks_on_stale_feedback() -> None:
    tx = TxWindow(1000, credit=100)
    tx.next_batch(0.0, 100)
    tx.on_feedback(fb(50, 300, 50), 0.001)
    tx.on_feedback(fb(40, 200, 40), 0.002)  # an older FEEDBACK that arrived late
    assert tx.credit == 300 and tx.cum_ack == 50


# -- streaming bursts (csrc/txstream.c) -------------------------------------------------------


def test_stream_range_is_the_next_run_of_new_chunks() -> None:
    tx = TxWindow(100, credit=10, have=[(0, 5), (40, 60)])
    assert tx.stream_range() == (5, 40)  # past the credit: the burst applies the grant itself
    tx.record_streamed(5, 10, 0.0, 10)
    assert tx.stream_range() == (10, 40)
    tx.record_streamed(10, 40, 0.0, 45)  # a grant read by the burst
    assert tx.stream_range() == (60, 100)
    tx.record_streamed(60, 100, 0.0, 100)
    assert tx.stream_range() is None  # everything went
    assert TxWindow(None, credit=0).stream_range() == (0, 1 << 62)


def test_only_plain_new_data_streams() -> None:
    lost = TxWindow(1000, credit=1000)
    lost.next_batch(0.0, 200)
    lost.on_feedback(fb(0, 1000, 200, ((100, 200),)), 0.001)  # 0-99 lost (packet threshold)
    assert lost.stream_range() is None
    paced = TxWindow(1000, credit=1000)
    paced.next_batch(0.0, 10)
    paced.on_feedback(fb(10, 1000, 10, drops=3), 0.001)
    assert paced.pacing_rate is not None and paced.stream_range() is None
    probed = TxWindow(1000, credit=1000)
    probed.next_batch(0.0, 10)
    probed.handle_timer(1.0)  # the RTO fires: a probe waits
    assert probed.stream_range() is None
    with pytest.raises(ValueError):
        probed.record_streamed(10, 20, 1.0, 1000)


@pytest.mark.parametrize(
    ("start", "end", "credit"),
    [(1, 5, 100), (0, 0, 100), (0, 70, 100), (0, 30, 20), (45, 60, 100)],
    ids=["not-next", "empty", "past-the-gap", "past-the-credit", "held-chunks"],
)
def test_record_streamed_refuses_what_no_burst_could_send(
    start: int, end: int, credit: int
) -> None:
    tx = TxWindow(100, credit=10, have=[(50, 60)])
    with pytest.raises(ValueError):
        tx.record_streamed(start, end, 0.0, credit)
    assert tx.stream_range() == (0, 50) and tx.in_flight == 0


def test_a_replayed_burst_leaves_the_window_where_batches_would() -> None:
    """Three sends and their FEEDBACKs, applied as they happen (next_batch) or after the burst
    (record_streamed, then the coalesced FEEDBACKs): same acknowledgements, RTT, timer, stats."""
    batches, burst = TxWindow(1000, credit=100), TxWindow(1000, credit=100)
    sends = [(0, 100, 0.000), (100, 250, 0.002), (250, 400, 0.004)]
    fbs = [
        (1, fb(100, 250, 100), 0.0015),
        (2, fb(250, 400, 250), 0.0035),
        (3, fb(400, 600, 400), 0.0055),
    ]
    batches.next_batch(0.000, 1000)
    batches.on_feedback(fbs[0][1], fbs[0][2], 1)
    batches.next_batch(0.002, 1000)
    batches.on_feedback(fbs[1][1], fbs[1][2], 2)
    batches.next_batch(0.004, 1000)
    batches.on_feedback(fbs[2][1], fbs[2][2], 3)
    for s, e, t in sends:
        burst.record_streamed(s, e, t, 400)
    for first, seq, body in coalesce_feedback([(seq, body) for seq, body, _ in fbs]):
        burst.on_feedback(body, fbs[-1][2], seq, first_seq=first)
    assert burst.acked() == batches.acked() and burst.cum_ack == 400
    assert (burst.credit, burst.in_flight) == (batches.credit, batches.in_flight) == (600, 0)
    assert burst.srtt == pytest.approx(0.0015)  # the newest send acknowledged, 1.5 ms later
    assert burst.stats.new_chunks_sent == batches.stats.new_chunks_sent == 400
    assert burst.next_timer() == batches.next_timer()
    assert burst.stream_range() == batches.stream_range() == (400, 1000)


# -- RTT (RFC 6298 §2) ------------------------------------------------------------------------


def test_rtt_estimator_follows_rfc6298() -> None:
    tx = TxWindow(1000, credit=1000)
    tx.next_batch(0.0, 10)
    tx.on_feedback(fb(10, 1000, 10), 0.001)
    assert tx.srtt == pytest.approx(0.001) and tx.rttvar == pytest.approx(0.0005)
    tx.next_batch(0.002, 10)
    tx.on_feedback(fb(20, 1000, 20), 0.005)  # sample 3 ms
    assert tx.rttvar == pytest.approx(0.75 * 0.0005 + 0.25 * 0.002)
    assert tx.srtt == pytest.approx(0.875 * 0.001 + 0.125 * 0.003)
    assert tx.min_rtt == pytest.approx(0.001)
    assert tx.stats.rtt_samples == 2


def test_no_rtt_sample_from_a_retransmission() -> None:
    tx = TxWindow(20, credit=20)
    tx.next_batch(0.0, 20)
    tx.on_feedback(fb(0, 20, 20, ((1, 20),)), 0.001)  # chunk 0 missing, 19 later acked
    tx.handle_timer(0.01)  # time threshold passed: chunk 0 is lost
    assert tx.next_batch(0.01, 10) == [(0, 1)]
    samples = tx.stats.rtt_samples
    tx.on_feedback(fb(20, 20, 20), 0.5)  # Karn: an ambiguous 490 ms "sample" is not taken
    assert tx.stats.rtt_samples == samples and tx.srtt == pytest.approx(0.001)
    assert tx.done


# -- loss detection (RFC 9002 §6.1) -----------------------------------------------------------


def test_packet_threshold_declares_loss_at_once() -> None:
    tx = TxWindow(1000, credit=1000)
    assert tx.next_batch(0.0, 200) == [(0, 200)]
    tx.on_feedback(fb(5, 1000, 200, ((6, 200),)), 0.001)
    assert tx.stats.lost_chunks == 1 and tx.in_flight == 0
    assert tx.next_batch(0.001, 10) == [(5, 6), (200, 209)]  # retransmission first
    assert tx.stats.retransmitted_chunks == 1


def test_time_threshold_declares_loss_after_nine_eighths_rtt() -> None:
    tx = TxWindow(1000, credit=1000)
    tx.next_batch(0.0, 10)
    tx.on_feedback(fb(5, 1000, 10, ((6, 10),)), 0.001)  # too few later chunks for the threshold
    assert tx.stats.lost_chunks == 0
    assert tx.next_timer() == pytest.approx(0.001125)  # sent at 0 + 9/8 x 1 ms
    tx.handle_timer(0.0011)
    assert tx.stats.lost_chunks == 0
    tx.handle_timer(0.00113)
    assert tx.stats.lost_chunks == 1
    assert tx.next_batch(0.0012, 1) == [(5, 6)]


def test_chunks_sent_after_the_largest_ack_are_not_lost() -> None:
    tx = TxWindow(1000, credit=1000)
    tx.next_batch(0.0, 100)
    tx.next_batch(0.0005, 100)
    tx.on_feedback(fb(100, 1000, 100), 0.01)
    tx.handle_timer(0.02)
    assert tx.stats.lost_chunks == 0 and tx.in_flight == 100


def test_loss_undone_by_a_late_ack_is_not_resent() -> None:
    tx = TxWindow(1000, credit=1000)
    tx.next_batch(0.0, 200)
    tx.on_feedback(fb(5, 1000, 200, ((6, 200),)), 0.001)
    tx.on_feedback(fb(200, 1000, 200), 0.0012)  # chunk 5 was only late
    assert tx.stats.spurious_losses == 1
    assert tx.next_batch(0.0013, 3) == [(200, 203)]


def test_truncated_sack_leaves_unreported_chunks_alone() -> None:
    tx = TxWindow(1000, credit=1000)
    tx.next_batch(0.0, 1000)
    sack = tuple((2 * k + 1, 2 * k + 2) for k in range(MAX_SACK_RANGES))  # 1, 3, ..., 127
    tx.on_feedback(fb(0, 1000, 1000, sack), 0.001)
    # 0, 2, ..., 126 are known missing; 128..998 were not reported, so they are not lost.
    assert tx.stats.lost_chunks == MAX_SACK_RANGES
    assert tx.next_batch(0.001, 1000)[:2] == [(0, 1), (2, 3)]


def test_spurious_retransmission_is_counted() -> None:
    tx = TxWindow(1000, credit=1000)
    tx.next_batch(0.0, 200)
    tx.on_feedback(fb(5, 1000, 200, ((6, 200),)), 0.001)
    tx.next_batch(0.001, 1)  # resend chunk 5
    tx.on_feedback(fb(200, 1000, 200), 0.0011)  # 0.1 ms later: the original's ack
    assert tx.stats.spurious_retransmits == 1


# -- timeouts (RFC 6298 §5) ---------------------------------------------------------------------


def test_rto_probes_back_off_and_the_stall_is_reported() -> None:
    cfg = TxConfig(initial_rtt=0.01, max_rto=0.5, stall_timeout=5.0)
    tx = TxWindow(10, credit=10, config=cfg)
    tx.next_batch(0.0, 10)
    expected = 0.03  # SRTT + 4 RTTVAR = 10 ms + 20 ms
    deadlines = []
    now = 0.0
    while True:
        timer = tx.next_timer()
        assert timer is not None
        now = timer
        if now >= 5.0:
            break
        tx.handle_timer(now)
        assert tx.next_batch(now, 10) == [(0, 1)]  # the probe: lowest unacknowledged chunk
        deadlines.append(now)
    gaps = [b - a for a, b in zip([0.0, *deadlines], deadlines, strict=False)]
    assert gaps[0] == pytest.approx(expected)
    assert gaps[1] == pytest.approx(2 * expected)
    assert max(gaps) == pytest.approx(0.5)  # bounded backoff
    assert tx.stats.probes == len(deadlines) <= 15
    with pytest.raises(TransferStalled) as info:
        tx.handle_timer(now)
    assert "stalled" in info.value.message and info.value.hint
    assert tx.stalled and tx.next_timer() is None
    with pytest.raises(TransferStalled):
        tx.next_batch(now, 10)


def test_ack_resets_backoff_and_recovers_after_probe() -> None:
    tx = TxWindow(100, credit=100, config=TxConfig(initial_rtt=0.01))
    tx.next_batch(0.0, 100)
    tx.handle_timer(0.03)
    tx.handle_timer(0.09)
    assert tx.stats.probes == 2
    assert tx.next_batch(0.09, 10) == [(0, 1)]
    assert tx.rto == pytest.approx(0.12)  # 30 ms, doubled twice (RFC 6298 §5.5)
    tx.on_feedback(fb(1, 100, 1), 0.1)  # the probe got through; the rest was lost
    assert tx.rto == pytest.approx(0.03)  # backoff reset, no RTT sample (Karn)
    assert tx.stats.lost_chunks == 99  # sent long before the acknowledged probe
    assert tx.next_batch(0.1, 200) == [(1, 100)]


def test_a_stalled_receiver_answering_the_probe_from_its_queue_loses_nothing() -> None:
    # The whole window waits in the receiver's socket while it is descheduled; the RTO sends
    # a probe of chunk 0. When the receiver runs again it acknowledges, in order, the first
    # transmissions: chunk 0 with 1..63. The probe's late transmission must not make 64..99,
    # still queued there, look lost (they were resent before: ~8,500 frames for a 50 ms stall).
    tx = TxWindow(100, credit=100, config=TxConfig(initial_rtt=0.01))
    tx.next_batch(0.0, 100)
    tx.handle_timer(0.03)
    assert tx.next_batch(0.03, 10) == [(0, 1)]
    tx.on_feedback(fb(64, 100, 64), 0.06)
    assert tx.stats.lost_chunks == 0 and tx.stats.ambiguous_probe_acks == 1
    assert tx.next_batch(0.06, 200) == []  # nothing to resend
    tx.on_feedback(fb(100, 100, 100), 0.061)
    assert tx.done and tx.stats.retransmitted_chunks == 1  # the probe alone


def test_a_window_lost_behind_a_stall_is_still_found_after_the_probe() -> None:
    # Same stall, but the receiver's socket overflowed: 64..79 were dropped. Its FEEDBACK
    # acknowledges 0..63 and 80..99 (first transmissions); the gap is lost by the time
    # threshold (RFC 9002 §6.1.2) measured from the chunks acknowledged after it, as it would
    # be without a probe.
    tx = TxWindow(100, credit=100, config=TxConfig(initial_rtt=0.01))
    tx.next_batch(0.0, 100)
    tx.handle_timer(0.03)
    tx.next_batch(0.03, 10)
    tx.on_feedback(fb(64, 100, 100, ((80, 100),)), 0.06)
    timer = tx.next_timer()
    assert timer is not None and timer < 0.1
    tx.handle_timer(timer)
    assert tx.stats.lost_chunks == 16
    assert tx.next_batch(timer, 200) == [(64, 80)]


def test_waiting_for_credit_counts_towards_the_stall() -> None:
    tx = TxWindow(100, credit=10, config=TxConfig(stall_timeout=1.0))
    tx.next_batch(0.0, 100)
    tx.on_feedback(fb(10, 10, 10), 0.001)  # everything acknowledged, no more credit
    assert tx.next_timer() == pytest.approx(1.001)
    tx.on_feedback(fb(10, 20, 10), 0.5)  # a credit update is progress...
    assert tx.next_timer() is None  # ...and the sender is no longer waiting
    assert tx.next_batch(0.5, 100) == [(10, 20)]
    timer = tx.next_timer()
    assert timer is not None and timer < 0.6


def test_idle_sender_is_not_stalled() -> None:
    tx = TxWindow(None, credit=100, config=TxConfig(stall_timeout=1.0))
    tx.next_batch(0.0, 10)
    tx.on_feedback(fb(10, 100, 10), 0.001)
    assert tx.next_timer() is None  # nothing outstanding and credit left: nothing to wait for
    tx.handle_timer(100.0)
    assert tx.next_batch(100.0, 5) == [(10, 15)]
    timer = tx.next_timer()
    assert timer is not None and timer <= 101.0  # the stall clock starts now, not at 0.001


# -- pacing from kernel drops -------------------------------------------------------------------


def test_kernel_drops_halve_the_rate_once_per_rtt_and_it_grows_back() -> None:
    tx = TxWindow(None, credit=10**6)
    assert tx.pacing_rate is None
    tx.next_batch(0.0, 100)
    tx.on_feedback(fb(100, 10**6, 100, drops=10), 0.001)
    assert tx.stats.kernel_drops == 10
    assert tx.pacing_rate == pytest.approx(50_000)  # half of 100 chunks per ms
    assert tx.next_batch(0.001, 100) == []  # the token bucket starts empty
    assert tx.next_batch(0.0012, 100) == [(100, 110)]  # 0.2 ms at 50k/s
    tx.on_feedback(fb(100, 10**6, 100, drops=5), 0.0015)  # same RTT: no second cut
    assert tx.pacing_rate == pytest.approx(50_000) and tx.stats.rate_cuts == 1
    tx.on_feedback(fb(110, 10**6, 110, drops=5), 0.003)
    assert tx.pacing_rate == pytest.approx(25_000) and tx.stats.rate_cuts == 2
    tx.on_feedback(fb(110, 10**6, 110), 0.004)
    rate = tx.pacing_rate
    assert rate is not None and rate > 25_000


def test_probes_are_not_paced() -> None:
    tx = TxWindow(200, credit=200, config=TxConfig(initial_rtt=0.01))
    tx.next_batch(0.0, 100)
    tx.on_feedback(fb(0, 200, 0, drops=50), 0.001)
    tx.on_feedback(fb(0, 200, 0, drops=50), 0.5)  # a second cut, long after
    tx.handle_timer(1.0)
    assert tx.next_batch(1.0, 10)[0] == (0, 1)


# -- receiver -----------------------------------------------------------------------------------


def test_rx_returns_new_ranges_and_counts_duplicates() -> None:
    rx = RxTracker(100, buffer_chunks=10)
    assert rx.on_chunks([(0, 5)], 0.0) == [(0, 5)]
    assert rx.on_chunks([(3, 8), (3, 4), (10, 12), (8, 9)], 0.0) == [(5, 9), (10, 12)]
    assert rx.counters.duplicates == 3 and rx.counters.chunks == 14
    assert rx.count == 11 and rx.cum_ack == 9 and rx.highest == 12
    assert rx.missing() == [(9, 10), (12, 100)]


def test_rx_feedback_carries_cum_ack_credit_and_sack() -> None:
    rx = RxTracker(100, buffer_chunks=10)
    assert rx.credit == 10
    rx.on_chunks([(0, 4), (6, 7), (8, 9)], 0.0)
    assert not rx.feedback_due(0.0005)
    assert rx.feedback_due(0.001)
    f = rx.make_feedback(0.001)
    assert f == Feedback(cum_ack=4, credit=14, highest=9, kernel_drops=0, ranges=((6, 7), (8, 9)))
    assert f.violation() is None
    rx.set_buffer_space(0)
    assert rx.make_feedback(0.002).credit == 14  # a grant is never taken back


def test_rx_feedback_schedule() -> None:
    cfg = RxConfig(interval=0.001, every_chunks=8, idle_interval=0.05)
    rx = RxTracker(100, buffer_chunks=50, config=cfg)
    rx.on_chunks([(0, 8)], 0.0)
    assert rx.feedback_due(0.0)  # enough chunks: at once
    rx.make_feedback(0.0)
    assert not rx.feedback_due(0.01)
    assert rx.next_timer() == pytest.approx(0.05)
    assert rx.feedback_due(0.05)  # idle repeat repairs a lost FEEDBACK
    rx.make_feedback(0.05)
    rx.set_buffer_space(60)  # the writers drained: a credit update is due
    timer = rx.next_timer()
    assert timer is not None and timer == pytest.approx(0.051)
    assert rx.feedback_due(timer)
    assert rx.make_feedback(timer).credit == 68
    rx.add_kernel_drops(3)
    assert rx.feedback_due(0.0525)
    assert rx.make_feedback(0.0525).kernel_drops == 3
    assert rx.make_feedback(0.054).kernel_drops == 0


def test_rx_complete_lingers_then_only_answers_duplicates() -> None:
    rx = RxTracker(10, buffer_chunks=100, config=RxConfig(idle_interval=0.05, linger=0.2))
    rx.on_chunks([(0, 10)], 0.0)
    assert rx.complete and rx.credit == 10  # capped at the total
    rx.make_feedback(0.001)
    repeats = []
    while (timer := rx.next_timer()) is not None:
        assert rx.feedback_due(timer)
        repeats.append(rx.make_feedback(timer))
    assert len(repeats) == 3  # at 51, 101 and 151 ms: the final FEEDBACK, in case it was lost
    assert all(f.cum_ack == 10 for f in repeats)
    assert not rx.feedback_due(10.0)
    rx.on_chunks([(9, 10)], 10.0)  # the sender missed the last FEEDBACK and probes
    assert rx.feedback_due(10.001)


def test_rx_resume_and_bad_chunks() -> None:
    rx = RxTracker(100, buffer_chunks=10, have=[(0, 50), (60, 70)])
    assert rx.cum_ack == 50 and rx.highest == 70 and rx.credit == 60
    assert rx.on_chunks([(95, 105)], 0.0) == [(95, 100)]
    assert rx.counters.out_of_range == 5
    assert rx.counters.over_credit == 5  # 95..99 were never granted
    assert rx.received().covers(60, 70)


# -- cost: per range, never per chunk -----------------------------------------------------------


def test_work_scales_with_ranges_not_chunks() -> None:
    """A trillion-chunk data space would take hours if anything looped over chunks."""
    big = 10**12
    rx = RxTracker(big, buffer_chunks=big, have=[(10, 20)])
    tx = TxWindow(big, credit=rx.credit, have=[(10, 20)])
    sent = tx.next_batch(0.0, big)
    assert sent == [(0, 10), (20, big)]
    # Everything but two holes arrives; the receiver hands over a few huge ranges.
    assert rx.on_chunks([(0, 5), (6, 10), (20, big // 2), (big // 2 + 1, big)], 0.001) == [
        (0, 5),
        (6, 10),
        (20, big // 2),
        (big // 2 + 1, big),
    ]
    feedback = rx.make_feedback(0.001)
    assert feedback.ranges == ((6, big // 2), (big // 2 + 1, big))  # 10..20 was held before
    tx.on_feedback(feedback, 0.002)
    assert tx.stats.lost_chunks == 2
    assert tx.next_batch(0.002, 10) == [(5, 6), (big // 2, big // 2 + 1)]
    rx.on_chunks([(5, 6), (big // 2, big // 2 + 1)], 0.003)
    tx.on_feedback(rx.make_feedback(0.003), 0.004)
    assert tx.done and rx.complete


def test_no_rtt_sample_after_lost_feedbacks() -> None:
    """Without an ack-delay field, acks that waited out a blackout would poison SRTT."""
    tx = TxWindow(1000, credit=1000)
    tx.next_batch(0.0, 10)
    tx.on_feedback(fb(5, 1000, 5), 0.001, seq=1)
    assert tx.stats.rtt_samples == 1
    tx.on_feedback(fb(10, 1000, 10), 0.3, seq=4)  # FEEDBACKs 2 and 3 were lost
    assert tx.stats.rtt_samples == 1 and tx.srtt == pytest.approx(0.001)
    tx.next_batch(0.3, 10)
    tx.on_feedback(fb(20, 1000, 20), 0.302, seq=5)
    assert tx.stats.rtt_samples == 2


def test_first_feedback_after_a_gap_gives_no_sample() -> None:
    tx = TxWindow(1000, credit=1000)
    tx.next_batch(0.0, 10)
    tx.on_feedback(fb(10, 1000, 10), 0.25, seq=7)
    assert tx.stats.rtt_samples == 0


# -- FEEDBACKs read together ----------------------------------------------------------------


def test_coalesce_merges_runs_of_consecutive_counters() -> None:
    a = fb(10, 100, 20, ((12, 20),), drops=3)
    b = fb(12, 90, 30, ((14, 30),), drops=4)  # credit lower than before: the grant stays
    c = fb(40, 200, 40, drops=1)
    other = fb(5, 50, 5)  # another receive process: its counter is elsewhere
    runs = coalesce_feedback([(7, a), (8, b), (9, c), (1000, other), (1001, other)])
    assert [(first, seq) for first, seq, _ in runs] == [(7, 9), (1000, 1001)]
    merged = runs[0][2]
    assert (merged.cum_ack, merged.credit, merged.highest) == (40, 200, 40)
    assert merged.kernel_drops == 8 and merged.ranges == ()
    assert coalesce_feedback([(5, a), (7, b)]) == [(5, 5, a), (7, 7, b)]  # FEEDBACK 6 lost
    assert coalesce_feedback([]) == []
    lower = coalesce_feedback([(1, fb(10, 100, 10)), (2, fb(10, 90, 10))])[0][2]
    assert lower.credit == 100


def test_a_coalesced_run_is_timely_only_after_the_last_counter_seen() -> None:
    tx = TxWindow(1000, credit=1000)
    tx.next_batch(0.0, 10)
    tx.on_feedback(fb(5, 1000, 5), 0.001, seq=1)
    assert tx.stats.rtt_samples == 1
    tx.next_batch(0.001, 10)
    tx.on_feedback(fb(20, 1000, 20), 0.003, seq=4, first_seq=2)  # stands for 2, 3 and 4
    assert tx.stats.rtt_samples == 2
    tx.next_batch(0.003, 10)
    tx.on_feedback(fb(30, 1000, 30), 0.3, seq=9, first_seq=7)  # 5 and 6 were lost
    assert tx.stats.rtt_samples == 2


@pytest.mark.parametrize("seed", range(5))
def test_coalesced_feedback_leaves_the_window_where_each_one_would(seed: int) -> None:
    """Applying bursts of FEEDBACKs merged (`coalesce_feedback`) or one by one ends in the same
    acknowledged set, credit, kernel-drop count and nothing more to resend, under loss."""
    import random

    rng = random.Random(seed)
    total = 3000
    windows = [TxWindow(total, credit=200), TxWindow(total, credit=200)]
    rxs = [RxTracker(total, buffer_chunks=200), RxTracker(total, buffer_chunks=200)]
    now = 0.0
    seqs = [0, 0]
    for step in range(3000):
        now += 0.001
        drop = {rng.randrange(total) for _ in range(5)} if step < 100 else set()
        burst: list[list[tuple[int, Feedback]]] = [[], []]
        for side in (0, 1):
            tx, rx = windows[side], rxs[side]
            timer = tx.next_timer()
            if timer is not None and timer <= now:
                tx.handle_timer(now)
            for s, e in tx.next_batch(now, 300):
                rx.on_chunks([(k, k + 1) for k in range(s, e) if k not in drop], now)
            for _ in range(3):  # several FEEDBACKs before the sender reads them
                rx.add_kernel_drops(1)
                seqs[side] += 1
                burst[side].append((seqs[side], rx.make_feedback(now)))
        now += 0.0005
        for seq, body in burst[0]:
            windows[0].on_feedback(body, now, seq)
        for first, seq, body in coalesce_feedback(burst[1]):
            windows[1].on_feedback(body, now, seq, first_seq=first)
        if all(w.done for w in windows):
            break
    one, merged = windows
    assert one.done and merged.done
    assert one.acked() == merged.acked()
    assert one.credit == merged.credit
    assert one.stats.kernel_drops == merged.stats.kernel_drops
