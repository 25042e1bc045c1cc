"""`l2fast ui`'s model (l2fast/tui/model.py), with no terminal and no node: messages and keys
in; requests, send commands and screen lines out."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2fast.tui.model import (
    ERROR,
    LOG_ENTRY_CHARS,
    REFRESH_S,
    SELECTED,
    Line,
    SendJob,
    UiModel,
    cells,
    fit,
    progress_bar,
    wrap,
)

A = "02:00:00:00:00:0a"
B = "02:00:00:00:00:0b"
HELLO = {"ok": True, "watching": True, "name": "me", "mac": "02:00:00:00:00:01",
         "interface": "eth9", "daemon": True}  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def peer(mac: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"mac": mac, "name": name, "mtu": 9000, "rtt_us": 52.0, "last_seen": 0.0,
            "daemon": True, **extra}  # fmt: skip


def started(peers: list[dict[str, Any]] | None = None) -> tuple[UiModel, Clock]:
    """A model that said hello and got its first peers, status and inbox."""
    clock = Clock()
    model = UiModel(new_id=itertools.count(1).__next__, clock=clock, wall=lambda: 0.0,
                    python="py")  # fmt: skip
    model.on_hello(HELLO)
    answer(model, peers=peers if peers is not None else [peer(B, "bob"), peer(A, "alice")],
           status={"transfers": []}, offers=[])  # fmt: skip
    return model, clock


def answer(model: UiModel, **fields: Any) -> list[dict[str, Any]]:
    """Answer every request the model has, by op, with `fields` (one key per op)."""
    requests = model.take_requests()
    for r in requests:
        key = {"peers": "peers", "status": "status", "inbox": "offers"}.get(r["op"])
        if key is not None and key in fields:
            model.on_message({"ok": True, "id": r["id"], key: fields[key]})
        elif r["op"] == "history" and "history" in fields:
            for entry in fields["history"]:
                model.on_message({"ok": True, "id": r["id"], "event": "entry", "entry": entry})
            model.on_message({"ok": True, "id": r["id"], "done": True})
    return requests


def typed(model: UiModel, text: str) -> None:
    for ch in text:
        model.on_key(ch)


def screen(model: UiModel, width: int = 100, height: int = 30) -> str:
    return "\n".join(line.text for line in model.render(width, height))


def test_hello_asks_for_history_peers_status_and_offers_each_once_per_refresh() -> None:
    clock = Clock()
    model = UiModel(new_id=itertools.count(1).__next__, clock=clock)
    model.on_hello(HELLO)
    ops = [r["op"] for r in model.take_requests()]
    assert ops == ["history", "peers", "status", "inbox"]
    model.tick()
    assert model.take_requests() == []  # not due yet
    clock.t += REFRESH_S
    model.tick()
    assert model.take_requests() == []  # due, but the first answers have not come yet


def test_refresh_asks_again_once_answered_and_due() -> None:
    model, clock = started()
    clock.t += REFRESH_S
    model.tick()
    assert sorted(r["op"] for r in model.take_requests()) == ["inbox", "peers", "status"]


def test_a_node_without_a_daemon_is_not_asked_for_history_or_offers() -> None:
    model = UiModel(new_id=itertools.count(1).__next__, clock=Clock())
    model.on_hello({**HELLO, "daemon": False})
    assert [r["op"] for r in model.take_requests()] == ["peers", "status"]
    assert "with a node of its own" in screen(model)


def test_peers_are_listed_by_name_with_everyone_picked_first() -> None:
    model, _ = started()
    text = screen(model)
    assert "> everyone (2 peers)" in text
    assert text.index("alice  02:00:00:00:00:0a  mtu 9000  rtt 0.052 ms") < text.index("bob")
    assert model.target is None


def test_tab_and_shift_tab_cycle_everyone_and_each_peer() -> None:
    model, _ = started()
    seen = []
    for _ in range(3):
        model.on_key("\t")
        seen.append(model.target)
    assert seen == [A, B, None]
    model.on_key("KEY_BTAB")
    assert model.target == B
    model.on_key("KEY_UP")
    assert model.target == A
    (picked,) = [line for line in model.render(100, 30) if line.style == SELECTED]
    assert picked.text.startswith("> alice")


def test_enter_sends_a_message_to_the_picked_peer_and_shows_delivery() -> None:
    model, _ = started()
    model.on_key("\t")
    typed(model, "hi there\n")
    (request,) = model.take_requests()
    assert request == {"op": "chat", "peer": A, "text": "hi there", "id": request["id"]}
    assert model.input == ""
    model.on_message({"ok": True, "id": request["id"], "delivered": True})
    text = screen(model)
    assert "[you to alice] hi there" in text and "[delivered to alice]" in text


def test_a_refused_message_is_shown_with_the_nodes_reason() -> None:
    model, _ = started()
    model.on_key("\t")
    typed(model, "hello\n")
    (request,) = model.take_requests()
    model.on_message({"ok": False, "id": request["id"], "error": "peer went \x1b[2J away"})
    lines = model.render(100, 30)
    (failed,) = [line for line in lines if "NOT delivered" in line.text]
    assert failed.style == ERROR
    assert failed.text == "[NOT delivered to alice: peer went \\x1b[2J away]"


def test_everyone_gets_chat_all_and_a_report_per_peer() -> None:
    model, _ = started()
    typed(model, "lunch?\r")
    (request,) = model.take_requests()
    assert request["op"] == "chat_all" and request["text"] == "lunch?"
    results = [
        {"mac": A, "name": "alice", "delivered": True, "error": None},
        {"mac": B, "name": "bob", "delivered": False, "error": "timeout"},
    ]
    model.on_message({"ok": True, "id": request["id"], "results": results})
    text = screen(model)
    assert f"[delivered to alice ({A})]" in text
    assert f"[NOT delivered to bob ({B}): timeout]" in text


def test_incoming_messages_and_history_are_shown_escaped() -> None:
    entry = {"time": 0.0, "name": "ev\x1bil", "mac": B, "text": "red \x1b[31m text\nline"}
    clock = Clock()
    model = UiModel(new_id=itertools.count(1).__next__, clock=clock)
    model.on_hello(HELLO)
    answer(model, history=[entry], peers=[], status={"transfers": []}, offers=[])
    model.on_message({"ok": True, "event": "chat", **entry, "text": "live \x1b]0;title\x07"})
    text = screen(model)
    assert "ev\\x1bil (02:00:00:00:00:0b): red \\x1b[31m text\\nline" in text
    assert "live \\x1b]0;title\\x07" in text
    assert "\x1b" not in text


def test_hostile_peer_names_are_escaped_in_the_table() -> None:
    model, _ = started([peer(A, "\x1b[2Jwipe\u202eevil")])
    assert "\\x1b[2Jwipe\\u202eevil  02:00:00:00:00:0a" in screen(model)


def test_a_slash_line_is_a_command_and_a_double_slash_a_message() -> None:
    model, _ = started()
    typed(model, "/bogus\n")
    assert model.take_requests() == []
    assert "[unknown command /bogus: /help lists them]" in screen(model)
    typed(model, "//etc is a path\n")
    (request,) = model.take_requests()
    assert request["text"] == "/etc is a path"


def test_to_picks_by_name_or_mac_and_refuses_an_ambiguous_name() -> None:
    model, _ = started([peer(A, "twin"), peer(B, "twin")])
    typed(model, "/to twin\n")
    assert model.target is None
    assert "2 peers are named twin: pick one by its MAC" in screen(model)
    typed(model, f"/to {B.upper()}\n")
    assert model.target == B
    typed(model, "/to 02:00:00:00:00:99\n")
    assert model.target == "02:00:00:00:00:99"
    assert "02:00:00:00:00:99  (not in the neighbour table)" in screen(model)
    typed(model, "/all\n")
    assert model.target is None


def test_accept_and_reject_name_the_offer_and_refresh_the_inbox() -> None:
    model, clock = started()
    offer = {"id": 7, "peer": A, "kind": "file", "size": 3 << 20, "path": "a\x1bb.bin",
             "waiting_s": 4.2}  # fmt: skip
    clock.t += REFRESH_S
    model.tick()
    answer(model, offers=[offer], peers=[peer(A, "alice")], status={"transfers": []})
    text = screen(model)
    assert "OFFERS WAITING: /accept ID or /reject ID" in text
    assert "     7  alice (02:00:00:00:00:0a)  file  3.00 MiB  a\\x1bb.bin  (waiting 4 s)" in text
    typed(model, "/accept 7\n")
    (request,) = model.take_requests()
    assert (request["op"], request["offer"]) == ("accept", 7)
    model.on_message({"ok": True, "id": request["id"], "path": "a.bin", "accepted": True,
                      "covered": 2})  # fmt: skip
    assert "[accepted a.bin and the 2 offers waiting under it]" in screen(model)
    model.tick()  # the inbox is asked for again at once
    assert "inbox" in [r["op"] for r in model.take_requests()]
    typed(model, "/reject seven\n")
    assert model.take_requests() == []
    assert "/reject needs the offer's number" in screen(model)


def test_an_inbox_the_node_cannot_list_is_said_once_and_not_asked_again() -> None:
    model, clock = started()
    clock.t += REFRESH_S
    model.tick()
    for r in model.take_requests():
        if r["op"] == "inbox":
            model.on_message({"ok": False, "id": r["id"], "error": "unknown request 'inbox'"})
        else:
            model.on_message({"ok": True, "id": r["id"], "peers": [], "status": {}})
    assert "offers cannot be listed here" in screen(model)
    clock.t += REFRESH_S
    model.tick()
    assert "inbox" not in [r["op"] for r in model.take_requests()]


def test_send_needs_one_peer_and_a_path() -> None:
    model, _ = started()
    typed(model, "/send /tmp/x\n")
    assert model.take_launches() == []
    assert "/send goes to one peer" in screen(model)
    model.on_key("\t")
    typed(model, "/send\n")
    assert model.take_launches() == []
    assert "/send needs a path" in screen(model)


def test_send_starts_l2fast_send_and_shows_its_progress_then_the_result() -> None:
    model, _ = started()
    model.on_key("\t")
    typed(model, "/send /data/big.bin\n")
    ((job, argv),) = model.take_launches()
    assert argv == ["py", "-m", "l2fast", "send", "--json", "--interface", "eth9", "--", A,
                    "/data/big.bin"]  # fmt: skip
    model.on_send_event(job, {"event": "progress", "bytes": 1 << 29, "total": 1 << 30,
                              "gbit_per_s": 3.25})  # fmt: skip
    text = screen(model)
    assert "/send #1 big.bin -> alice" in text
    assert " 50.0%  512 MiB / 1.00 GiB  3.25 Gbit/s" in screen(model, 140)
    model.on_send_event(job, {"event": "done", "bytes": 1 << 30, "seconds": 2.5,
                              "gbit_per_s": 3.4, "verified": True})  # fmt: skip
    model.on_send_exit(job, 0, "")
    text = screen(model)
    assert "[sent /data/big.bin to alice: 1.00 GiB in 2.50 s, 3.40 Gbit/s, verified]" in text
    assert "TRANSFERS" not in text and model.sends == []


def test_a_send_that_fails_shows_the_commands_error() -> None:
    model, _ = started()
    model.on_key("\t")
    typed(model, "/send nothere\n")
    ((job, _),) = model.take_launches()
    model.on_send_exit(job, 1, "l2fast: error: cannot read 'nothere': \x1b[31mgone\n")
    (line,) = [x for x in model.render(100, 30) if "FAILED" in x.text]
    assert line.style == ERROR
    assert line.text == (
        "[sending nothere to alice FAILED: l2fast: error: cannot read 'nothere': \\x1b[31mgone]"
    )


def test_a_send_done_but_not_verified_is_a_failure() -> None:
    model, _ = started()
    model.on_key("\t")
    typed(model, "/send f\n")
    ((job, _),) = model.take_launches()
    model.on_send_event(job, {"event": "done", "verified": False, "error": "digest mismatch"})
    model.on_send_exit(job, 1, "l2fast: error: digest mismatch")
    text = screen(model)
    assert "[sending f to alice FAILED: digest mismatch]" in text
    assert text.count("FAILED") == 1  # the exit adds nothing once the result was said


def test_transfers_of_the_node_are_shown_with_a_bar() -> None:
    model, clock = started()
    clock.t += REFRESH_S
    model.tick()
    transfer = {"direction": "receive", "peer": A, "files": 3, "bytes_done": 1 << 20,
                "bytes_total": 4 << 20}  # fmt: skip
    answer(model, status={"transfers": [transfer]}, peers=[peer(A, "alice")], offers=[])
    assert "receive <- alice (02:00:00:00:00:0a)  3 files  [" in screen(model)
    assert " 25.0%  1.00 MiB / 4.00 MiB" in screen(model, 140)


def test_keys_edit_the_line_and_ctrl_c_or_ctrl_d_on_an_empty_line_quit() -> None:
    model, _ = started()
    typed(model, "abc")
    model.on_key("KEY_BACKSPACE")
    assert model.input == "ab"
    model.on_key("^D")
    assert not model.quitting  # Ctrl-D with text typed does not leave
    model.on_key("^U")
    model.on_key("KEY_F(5)")
    assert model.input == ""
    model.on_key("^D")
    assert model.quitting
    other, _ = started()
    other.on_key("^C")
    assert other.quitting
    third, _ = started()
    typed(third, "/quit\n")
    assert third.quitting


def test_help_lists_the_commands() -> None:
    model, _ = started()
    typed(model, "/help\n")
    text = screen(model, 120, 40)
    for word in ("/send PATH", "/accept ID", "/to NAME|MAC", "/discover", "/quit"):
        assert word in text


def test_discover_names_the_nodes_the_key_check_refused() -> None:
    model, _ = started(peers=[])
    typed(model, "/discover\n")
    (request,) = [r for r in model.take_requests() if r["op"] == "discover"]
    why = "02:00:00:00:00:0c was not heard: its frames were sealed with another LAN key"
    unheard = {"macs": {"02:00:00:00:00:0c": "bad_auth"}, "text": why + "\x1b[2J"}
    model.on_message({"ok": True, "id": request["id"], "peers": [], "unheard": unheard})
    (said,) = [line for line in model.log if why in line.text]
    assert said.style == ERROR and "\x1b" not in said.text  # escaped, as wire text is
    assert "0 peers answered" in screen(model)


def test_a_tiny_terminal_gets_one_line_asking_for_more_room() -> None:
    model, _ = started()
    assert model.render(19, 30) == [Line("l2fast ui: make the", ERROR)]
    lines = model.render(40, 5)
    assert [line.text for line in lines] == ["l2fast ui: make the terminal larger"]


def test_fit_counts_wide_characters_twice() -> None:
    assert fit("日本語テキスト", 5) == "日本"
    assert cells(fit("a😀b", 2)) <= 2
    assert fit("e\u0301x", 2) == "e\u0301x"  # a combining mark takes no cell
    assert fit("abc", 0) == ""


def test_wrap_keeps_every_character() -> None:
    assert wrap("abcdefg", 3) == ["abc", "def", "g"]
    assert wrap("", 5) == [""]
    assert wrap("日本語", 4) == ["日本", "語"]
    assert "".join(wrap("x😀" * 50, 7)) == "x😀" * 50


def test_a_long_message_is_wrapped_not_cut_and_a_huge_one_summarised() -> None:
    model, _ = started([])
    long = "word " * 60
    model.on_message({"ok": True, "event": "chat", "time": 0.0, "name": "bob", "mac": B,
                      "text": long})  # fmt: skip
    text = "".join(line.text for line in model.render(40, 30))
    assert long.strip() in text.replace("\n", "")
    model.on_message({"ok": True, "event": "chat", "time": 0.0, "name": "bob", "mac": B,
                      "text": "y" * (1 << 20)})  # fmt: skip
    last = model.log[-1].text
    assert len(last) < 4300
    assert last.endswith("more characters: `l2fast chat --history`)")


def test_progress_bar_is_bounded() -> None:
    assert progress_bar(5, 10, 12) == "[#####-----]"
    assert progress_bar(50, 10, 6) == "[####]"
    assert progress_bar(1, 0, 6) == "[----]"


names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(1, 160),
    height=st.integers(1, 60),
    peer_names=st.lists(names, max_size=20),
    typed_text=names,
    messages=st.lists(names, max_size=30),
)
def test_the_screen_never_exceeds_the_terminal(
    width: int, height: int, peer_names: list[str], typed_text: str, messages: list[str]
) -> None:
    model, _ = started([peer(f"02:00:00:00:01:{i:02x}", n) for i, n in enumerate(peer_names)])
    for text in messages:
        model.on_message({"ok": True, "event": "chat", "time": 0.0, "name": text, "mac": A,
                          "text": text})  # fmt: skip
    for ch in typed_text:
        if ch.isprintable():
            model.on_key(ch)
    model.on_key("\t")
    lines = model.render(width, height)
    assert len(lines) <= height
    assert all(cells(line.text) <= width for line in lines)
    assert all("\x1b" not in line.text for line in lines)


def test_ui_without_a_terminal_says_so() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "l2fast", "ui"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "l2fast ui needs a terminal on stdin and stdout" in result.stderr
    assert "Traceback" not in result.stderr


def test_send_job_numbers_count_up() -> None:
    model, _ = started()
    model.on_key("\t")
    typed(model, "/send a\n/send b\n")
    jobs = [job for job, _ in model.take_launches()]
    assert [j.number for j in jobs] == [1, 2]
    assert all(isinstance(j, SendJob) for j in jobs)


def status_answer(model: UiModel, clock: Clock, **status: Any) -> None:
    clock.t += REFRESH_S
    model.tick()
    answer(model, status=status, peers=[peer(A, "alice")], offers=[])


def received(n: int, name: str = "f.bin", **extra: Any) -> dict[str, Any]:
    return {"n": n, "peer": A, "path": name, "final_name": name, "bytes": 4096,
            "digest": "00", "present": False, **extra}  # fmt: skip


def test_files_received_since_the_start_are_told_once() -> None:
    model, clock = started()
    status_answer(model, clock, transfers=[], received=[received(1, "old.bin")])
    assert "old.bin" not in screen(model)  # from before the interface started
    status_answer(model, clock, transfers=[],
                  received=[received(1, "old.bin"), received(2, "new\x1b.bin")])  # fmt: skip
    latest = [received(2, "new\x1b.bin"), received(3, "same.bin", present=True)]
    status_answer(model, clock, transfers=[], received=latest)
    text = screen(model, 120)
    assert text.count("new\\x1b.bin") == 2  # "received PATH ... as FINAL", said once
    assert f"[received new\\x1b.bin from alice ({A}) as new\\x1b.bin (4.00 KiB, verified)]" in text
    assert f"[same.bin from alice ({A}) was already here]" in text
    assert "old.bin" not in text


# 10 files arrive, numbered from `first`: with 1 status lists them all; with 41 the files
# 1-40 arrived too, and status lists only the newest 10. The count comes from the numbers.
@pytest.mark.parametrize("first", [1, 41])
def test_many_files_at_once_are_told_as_one_count_by_their_numbers(first: int) -> None:
    model, clock = started()
    status_answer(model, clock, transfers=[], received=[])
    newest = first + 9
    listed = [received(n, f"f{n}.bin") for n in range(first, newest + 1)]
    status_answer(model, clock, transfers=[], received=listed)
    assert f"[received {newest} files from alice ({A}), the last f{newest}.bin]" in screen(
        model, 120
    )


def test_a_transfers_rate_comes_from_successive_statuses() -> None:
    model, clock = started()

    def transfer(done: int) -> dict[str, Any]:
        return {"direction": "send", "peer": A, "session": "0x1", "files": 1,
                "bytes_done": done, "bytes_total": 10**10}  # fmt: skip

    status_answer(model, clock, transfers=[transfer(0)])
    status_answer(model, clock, transfers=[transfer(125_000_000)])  # 1 Gbit in 0.5 s
    assert "2.00 Gbit/s" in screen(model, 160)


def test_pgup_scrolls_the_messages_back_and_end_returns() -> None:
    model, _ = started([])
    for i in range(100):
        model.on_message({"ok": True, "event": "chat", "time": 0.0, "name": "bob", "mac": B,
                          "text": f"message {i:03d}"})  # fmt: skip
    text = screen(model, 80, 20)
    assert "message 099" in text and "message 080" not in text
    model.on_key("KEY_PPAGE")
    text = screen(model, 80, 20)
    assert "message 099" not in text and "scrolled back" in text
    shown = [int(x) for x in re.findall(r"message (\d{3})", text)]
    assert shown == sorted(shown) and max(shown) < 99
    # A new message while scrolled back does not move what is shown.
    model.on_message({"ok": True, "event": "chat", "time": 0.0, "name": "bob", "mac": B,
                      "text": "message new"})  # fmt: skip
    assert [int(x) for x in re.findall(r"message (\d{3})", screen(model, 80, 20))] == shown
    for _ in range(50):
        model.on_key("KEY_PPAGE")
    text = screen(model, 80, 20)
    assert "message 000" in text  # stops at the oldest kept
    model.on_key("KEY_END")
    text = screen(model, 80, 20)
    assert "message new" in text and "scrolled back" not in text


def test_a_tab_in_a_typed_line_is_text_and_does_not_change_the_recipient() -> None:
    model, _ = started()
    typed(model, "col1\tcol2")
    model.on_key("KEY_UP")
    assert model.target is None  # still everyone: the line goes where it was started
    assert "before picking someone else" in model.notice.text
    model.on_key("\n")
    (request,) = model.take_requests()
    assert (request["op"], request["text"]) == ("chat_all", "col1\tcol2")


def test_a_line_longer_than_the_screen_shows_its_end() -> None:
    model, _ = started()
    typed(model, "a" * 150 + "THE END")
    (last,) = model.render(60, 20)[-1:]
    assert last.text.startswith("to everyone> <") and last.text.endswith("THE END")
    assert cells(last.text) <= 60


def test_a_huge_message_is_cut_before_it_is_escaped() -> None:
    model, _ = started([])
    started_at = time.perf_counter()
    for _ in range(10):
        model.on_message({"ok": True, "event": "chat", "time": 0.0, "name": "bob", "mac": B,
                          "text": "\x01" * (1 << 20)})  # fmt: skip
    assert time.perf_counter() - started_at < 2.0  # escaping 10 MiB took ~7 s
    line = model.log[-1].text
    assert line.endswith(f"... ({(1 << 20) - LOG_ENTRY_CHARS} more characters: "
                         "`l2fast chat --history`)")  # fmt: skip
    assert line.count("\\x01") == LOG_ENTRY_CHARS


def test_spacing_marks_take_a_cell() -> None:
    assert cells("\u1b44" * 10) == 10  # spacing virama (Mc): one cell each, as wcwidth says
    assert cells("e\u0301") == 1  # a nonspacing accent (Mn) takes none


def test_many_offers_end_with_how_many_more() -> None:
    model, clock = started()
    offers = [{"id": i, "peer": A, "kind": "file", "size": 1, "path": f"f{i}", "waiting_s": 1}
              for i in range(1, 21)]  # fmt: skip
    clock.t += REFRESH_S
    model.tick()
    answer(model, offers=offers, peers=[peer(A, "alice")], status={"transfers": []})
    text = screen(model, 100, 40)
    assert "f6  (waiting" in text and "f7  (waiting" not in text
    assert "... and 14 more (`l2fast inbox` lists them all)" in text


def test_a_waiting_folder_is_one_row_with_how_many_entries_wait_inside() -> None:
    model, clock = started()
    offers = [
        {
            "id": 1,
            "peer": A,
            "kind": "directory",
            "size": 0,
            "path": "tree",
            "waiting_s": 1,
            "folder": None,
        }
    ]
    offers += [{"id": 2 + i, "peer": A, "kind": "file", "size": 1, "path": f"tree/f{i}",
                "waiting_s": 1, "folder": 1} for i in range(300)]  # fmt: skip
    clock.t += REFRESH_S
    model.tick()
    answer(model, offers=offers, peers=[peer(A, "alice")], status={"transfers": []})
    text = screen(model, 120, 40)
    assert "tree (and 300 entries inside)  (waiting" in text
    assert "tree/f0" not in text and "more (`l2fast inbox`" not in text


def test_the_daemons_row_stands_for_a_send_started_here() -> None:
    model, clock = started()
    model.on_key("\t")
    typed(model, "/send big.bin\n")
    model.take_launches()
    assert "/send #1 big.bin -> alice  offered, waiting for the peer's answer" in screen(model)
    held = {"direction": "send", "peer": A, "session": "0x9", "files": 1, "bytes_done": 0,
            "bytes_total": 0}  # fmt: skip
    status_answer(model, clock, transfers=[held])
    text = screen(model, 120)
    assert "send -> alice (02:00:00:00:00:0a)  1 file  offered, waiting" in text
    assert "/send #1" not in text.split("MESSAGES")[0]  # one row for one transfer


def test_offers_cannot_be_answered_without_a_daemon() -> None:
    model = UiModel(new_id=itertools.count(1).__next__, clock=Clock())
    model.on_hello({**HELLO, "daemon": False})
    model.take_requests()
    typed(model, "/accept 3\n")
    assert model.take_requests() == []
    assert "offers are held by a daemon run with --accept ask" in screen(model, 160)


def test_the_input_line_edits_at_the_cursor() -> None:
    model, _ = started()
    typed(model, "helo wrld")
    for _ in range(3):
        model.on_key("KEY_LEFT")
    typed(model, "o")  # "helo wo|rld"
    model.on_key("^A")
    model.on_key("KEY_RIGHT")
    model.on_key("KEY_RIGHT")
    typed(model, "l")  # "hel|lo world"
    assert model.input == "hello world"
    model.on_key("^E")
    model.on_key("KEY_BACKSPACE")
    model.on_key("KEY_HOME")
    model.on_key("KEY_DC")
    assert model.input == "ello worl"
    line = model.render(80, 20)[-1]
    assert line.text == "to everyone> ello worl"
    assert model.cursor_x == len("to everyone> ")  # at the start, after Home
    model.on_key("\n")
    (request,) = model.take_requests()
    assert request["text"] == "ello worl" and (model.input, model.cursor) == ("", 0)


def test_a_long_line_is_shown_around_the_cursor() -> None:
    model, _ = started()
    typed(model, "START" + "x" * 200 + "END")
    model.on_key("^A")
    line = model.render(60, 20)[-1]
    assert line.text.startswith("to everyone> START") and "<" not in line.text
    assert model.cursor_x == len("to everyone> ")
    model.on_key("^E")
    line = model.render(60, 20)[-1]
    assert line.text.startswith("to everyone> <") and line.text.endswith("END")
    assert model.cursor_x == cells(line.text)  # just after the last character


def test_a_folder_held_entry_by_entry_is_told_in_a_few_lines() -> None:
    model, _ = started()
    model.on_key("\t")
    typed(model, "/send tree\n")
    ((job, _),) = model.take_launches()
    for i in range(10):
        model.on_send_event(job, {"event": "held", "path": f"tree/f{i}", "pending_id": i + 1})
    text = screen(model, 120, 40)
    assert text.count("until someone there accepts it") == 3
    assert text.count("holds more of /send #1 for a person") == 1


def test_the_entries_of_a_waiting_folder_are_one_line_naming_the_folders_id() -> None:
    model, _ = started()
    model.on_key("\t")
    typed(model, "/send tree\n")
    ((job, _),) = model.take_launches()
    for i in range(300):  # the receiver names the folder's id (7) for every entry in it
        model.on_send_event(job, {"event": "held", "path": f"tree/f{i}", "pending_id": 7})
    text = screen(model, 120, 40)
    assert text.count("until someone there accepts it (offer 7 there)") == 1
    assert "holds more" not in text


def test_skipped_entries_of_a_send_are_named() -> None:
    model, _ = started()
    model.on_key("\t")
    typed(model, "/send tree\n")
    ((job, _),) = model.take_launches()
    skipped = [{"path": "tree/link", "reason": "symlink"}, {"path": "tree/l2", "reason": "x"}]
    model.on_send_event(job, {"event": "done", "verified": True, "skipped": skipped})
    assert "[/send #1 left out 2 entries, such as tree/link (symlink)]" in screen(model, 120)
    typed(model, "/send tree\n")
    ((job, _),) = model.take_launches()
    lost = {"path": "tree/caf\\xe9", "reason": "not UTF-8", "lost": True}
    model.on_send_event(job, {"event": "done", "verified": True, "skipped": [*skipped, lost]})
    said = "[/send #2 could not send 1 entry, such as tree/caf\\xe9 (not UTF-8)]"
    assert [line.style for line in model.log if line.text == said] == [ERROR]


def test_a_send_without_a_daemon_announces_the_interfaces_name() -> None:
    model = UiModel(new_id=itertools.count(1).__next__, clock=Clock(), python="py")
    model.on_hello({**HELLO, "daemon": False, "name": "solo"})
    typed(model, f"/to {A}\n/send f\n")
    ((_, argv),) = model.take_launches()
    assert argv[-5:] == ["--name", "solo", "--", A, "f"]
