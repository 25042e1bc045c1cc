"""`l2fast send PEER PATH`: send a file or a folder, verified end to end (issue 5)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from l2fast.daemon.client import add_node_arguments, connect
from l2fast.daemon.control import MAX_FDS, DaemonClosed
from l2fast.daemon.display import counted
from l2fast.errors import KEY_MISMATCH_MARK, L2fastError
from l2fast.progress import JsonProgress, ProgressLine, format_bytes
from l2fast.transfer.names import display_name
from l2fast.transfer.tree import (
    NOT_FOLLOWED,
    SkippedEntry,
    TreePlan,
    check_fd_room,
    open_entry,
    plan_tree,
    raise_fd_limit,
)
from l2fast.wire.constants import FileKind, error_name

EXAMPLES = """\
examples:
  sudo l2fast send h2 big.iso                    send a file to the peer named h2
  sudo l2fast send 02:00:00:00:00:02 photos/     a folder: its tree, modes, empty dirs
  l2fast send h2 big.iso --json                  NDJSON progress, then a final event
                                                 {bytes, seconds, gbit_per_s, digest, verified,
                                                  files, directories, skipped, results}

PEER is a MAC or a name from `l2fast discover`. The receiving daemon decides by its --accept
policy (all, ask: `l2fast inbox` / `l2fast accept ID` there, none). With ask (the default), the
receiver says that a person must decide, and this command prints which `l2fast accept ID` to
run there (--json: a `held` event with path, pending_id and the receiver's text, then a
`waiting` event every few seconds); it then waits for that decision with no time limit
(Ctrl-C cancels). `l2fast reject ID` there ends the send with exit status 1 and the
receiver's reason. The files are opened with your own rights; with a daemon on the
interface they are handed to it (SCM_RIGHTS), otherwise this command runs the sender itself
(root or CAP_NET_RAW needed). The digest of every file (SHA-256, or BLAKE2b with --digest
blake2b) is compared by the receiver; the exit status is 0 only when every file was verified,
1 when the receiver refused a file or a transfer failed (with a hint when sending again
resumes it). A symlink named as PATH is sent as what it points to; symlinks inside a folder
(unless --follow-symlinks), FIFOs, sockets and devices are not sent, and are named on one line
before the transfer (--json: `skipped` in the final event, a list of {path, reason, lost}).
So are entries left out for a problem of their own (`lost`: a name a receiver refuses or that
is not UTF-8, a folder that cannot be read): the rest is sent, and the exit status is then 1.
Sending the same file again after an interrupted transfer sends only what the receiver is
missing (skipped_bytes in the final event), and a file the receiver already has under its
name (same size and digest) is not sent at all and not copied again: it is reported as
already there (files_present, and per file present).
A file of that name that differs is received beside it as `name (1).ext`, as before.
A file truncated or modified while it is being sent ends the send (exit status 1) with an
error that says so, as does one that cannot be read through a mapping (a /sys file); a /proc
file, whose size says 0, is refused before anything is sent.

The --json final event's seconds and gbit_per_s (and the text summary's) leave out the time an
offer waited for a person at the receiver, which is held_seconds; gbit_per_s is bytes_sent over
seconds (0 when nothing had to cross). Its bytes is the size of everything offered, whatever
the receiver did with it; bytes_sent is the file bytes that had to cross (each counted once).
It also carries resent_bytes and retransmitted_frames (DATA sent again after a loss or
timeout), streaming_bursts (how many C bursts sent the new data of large files),
feedback_refused (frames that reached the sender as this transfer's FEEDBACK but failed
verification: corrupted or forged), skipped_bytes (already at the receiver: resume or files
already there), files_present (files the receiver already had, so nothing was sent for them),
files_inline (small files that went with their offer, one frame each way, as the receiver
allowed; L2FAST_INLINE=0 in the environment of the node that sends, the daemon's when one
runs, turns that off), files and directories (how many of each were offered), and results,
one object per entry with its kind (file or directory), verified, and for a file digest,
needed_bytes, skipped_bytes and present. A directory the receiver created is verified with
digest null: it has no content to digest, and the receiver confirmed it. A refused entry has
rejected, reason (its error name, as in the `rejected` event) and text; a failed one has failed
and error; both have verified false.
"""

#: Seconds without any message from the node before the command gives up. While the
#: receiver holds an offer for a person, the node repeats a `waiting` event every few seconds
#: (daemon.outgoing.HELD_REPEAT_S), so a decision may take as long as it takes.
SILENCE_S = 120.0
#: How long the daemon may take to answer one `send_fds` message.
FDS_TIMEOUT_S = 10.0
#: Held files announced one line each in text mode; after that, one line for the rest.
HELD_LINES = 10
#: Skipped entries named in text mode; after that, how many more.
SKIPPED_NAMED = 10
#: The hint of a failure that sending again resumes: the receiver keeps its part files and
#: does not take again the files it already holds (PROTOCOL.md §FILE_ACCEPT).
RESUME_HINT = "send it again: what arrived is kept and the transfer resumes"
#: The hint of a failure before any file was answered.
NOT_REACHED_HINT = (
    "nothing was sent; is l2fast running there, on this LAN? `l2fast discover` lists the "
    "nodes that answer"
)


def run(args: argparse.Namespace) -> int:
    """Send PATH to PEER and report."""
    fd_limit = raise_fd_limit()
    plan = plan_tree(args.path, 1024, follow_symlinks=args.follow_symlinks)
    check_fd_room(plan, fd_limit)
    files: list[dict[str, Any]] = []
    fds: list[int] = []
    try:
        for e in plan.entries:
            files.append(
                {"path": e.path, "kind": int(e.kind), "mode": e.mode, "mtime_ns": e.mtime_ns}
            )
            if e.kind == FileKind.FILE:
                fds.append(open_entry(e))
        skipped = _skipped_line(plan.skipped)
        if skipped and not args.json:
            # Before the transfer (which may take long): what will not arrive, and why.
            print(skipped, file=sys.stderr, flush=True)
        return _send(args, plan, files, fds)
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _send(
    args: argparse.Namespace, plan: TreePlan, files: list[dict[str, Any]], fds: list[int]
) -> int:
    request = {"op": "send", "peer": args.peer, "files": files, "digest": args.digest}
    total = plan.total_bytes
    label = os.path.basename(os.path.normpath(args.path))
    line = ProgressLine(total, label=label, quiet=args.quiet or args.json)
    js = JsonProgress() if args.json else None
    final: dict[str, Any] = {}
    with connect(args.interface, local_ok=True, name=args.name) as client:
        # The descriptors travel with the request; the node owns its copies from then on.
        if client.via_daemon:
            # A control message carries at most MAX_FDS descriptors: the rest go ahead.
            last = len(fds) - (len(fds) - 1) % MAX_FDS - 1 if fds else 0
            for i in range(0, last, MAX_FDS):
                # Each waits for its answer: a daemon that cannot hold them all says so here,
                # and nothing has been offered yet.
                client.request({"op": "send_fds"}, FDS_TIMEOUT_S, fds=fds[i : i + MAX_FDS])
            given = fds[last:]
        else:
            # In-process, the engine owns and closes what it is given.
            given, fds[:] = list(fds), []
        held: set[int] = set()
        moved = False  # some data went out (a resume has something to pick up)
        try:
            for msg in client.stream(request, SILENCE_S, fds=given):
                event = msg.get("event")
                if msg.get("done"):
                    final = msg
                    break
                if event == "held":
                    _held(args, msg, held, line, js)
                else:
                    moved = moved or (event == "progress" and int(msg.get("bytes", 0)) > 0)
                    _event(msg, total, line, js)
        except KeyboardInterrupt:
            line.clear()  # "interrupted" goes on a line of its own; the node cancels the send
            # Exit 130, as for any Ctrl-C (128 + SIGINT). Interrupted while the receiver's
            # person had not decided yet, nothing was sent: there is nothing to resume.
            if moved:
                hint = RESUME_HINT
            elif held:
                hint = "nothing was sent yet (the receiver had not accepted it): send it again"
            else:
                hint = "nothing was sent yet: send it again to start over"
            raise L2fastError("interrupted", hint=hint, exit_code=130) from None
        except DaemonClosed:
            line.clear()
            raise L2fastError(
                "the l2fast daemon closed the connection during the transfer",
                hint="it stopped or restarted (`l2fast status` tells whether one runs now; its "
                f"log says why); once it runs, {RESUME_HINT}",
            ) from None
    ok = bool(final.get("success")) and bool(final.get("verified"))
    final["files"] = _results(final.get("files", []), {e.path: e.kind for e in plan.entries})
    error = _left_out(plan.skipped) if ok else _failure(final)
    sent = int(final.get("bytes_sent", 0))
    line.finish(sent)
    if js is not None:
        held_s = float(final.get("held_seconds", 0.0))
        js.final(
            n_bytes=int(final.get("bytes", 0)),
            digest=final.get("digest") or None,  # null, as a directory's, when there is none
            verified=ok,
            idle_s=held_s,
            rate_bytes=sent,
            files=plan.n_files,
            directories=plan.n_dirs,
            bytes_sent=sent,
            resent_bytes=final.get("resent_bytes", 0),
            retransmitted_frames=final.get("retransmitted_frames", 0),
            streaming_bursts=final.get("streaming_bursts", 0),
            feedback_refused=final.get("feedback_refused", 0),
            skipped_bytes=final.get("skipped_bytes", 0),
            files_present=final.get("files_present", 0),
            files_inline=final.get("files_inline", 0),
            held_seconds=held_s,
            skipped=[{"path": s.path, "reason": s.reason, "lost": s.lost} for s in plan.skipped],
            results=final["files"],
            **({"error": error.message} if error is not None else {}),
        )
    elif ok and not args.quiet:
        _summary(final, args.digest)
    elif not args.quiet and (arrived := _arrived_line(final["files"])) is not None:
        print(arrived)  # what a failed send did deliver, before its error
    if error is not None:
        error.reported_as_json = js is not None  # printed like every other error, after it
        raise error
    return 0


def _some(names: list[str]) -> str:
    """`names` joined, the first SKIPPED_NAMED of them and how many more."""
    more = len(names) - SKIPPED_NAMED
    return ", ".join(names[:SKIPPED_NAMED]) + (f" and {more} more" if more > 0 else "")


def _left_out(skipped: Sequence[SkippedEntry]) -> L2fastError | None:
    """The error of a send that verified everything it sent but left out entries for a
    problem of their own (a name, permissions: `SkippedEntry.lost`), or None. Those were
    named before the transfer; a script must not take exit status 0 for "all arrived"."""
    lost = [s for s in skipped if s.lost]
    if not lost:
        return None
    return L2fastError(
        f"everything sent was verified, but {counted(len(lost), 'entry', 'entries')} could "
        f"not be sent: {_some([s.path for s in lost])} (each is in the list of skipped "
        "entries, with why)",
        hint="rename them or make them readable, then send again: what arrived is not sent again",
    )


def _results(results: list[dict[str, Any]], kinds: dict[str, FileKind]) -> list[dict[str, Any]]:
    """The node's per-entry results as a script reads them: each has `kind` and `verified`. A
    directory the receiver confirmed is verified with digest None (it has no content to
    digest; the node says verified False for kinds without a digest), and a refusal's
    `reason` is its error name, as in the `rejected` event."""
    out = []
    for result in results:
        r = dict(result)
        kind = kinds.get(str(r.get("path")), FileKind.FILE)
        r["kind"] = kind.name.lower()
        if r.get("rejected"):
            reason = r.get("reason")
            r["reason"] = error_name(reason) if isinstance(reason, int) else reason
        elif kind == FileKind.DIRECTORY and not r.get("failed"):
            r["verified"], r["digest"] = True, None
        r.setdefault("verified", False)
        out.append(r)
    return out


def _skipped_line(skipped: Sequence[SkippedEntry]) -> str | None:
    """One line naming what the plan leaves out (at most SKIPPED_NAMED names), or None."""
    if not skipped:
        return None
    n = len(skipped)
    named = _some([f"{s.path} ({s.reason})" for s in skipped])
    tip = (
        " (use --follow-symlinks to send what links point to)"
        if any(s.reason == NOT_FOLLOWED for s in skipped)
        else ""
    )
    return f"skipped {counted(n, 'entry', 'entries')}, not sent: {named}{tip}"


def _failure(final: dict[str, Any]) -> L2fastError:
    """The error of a send that did not end verified, with what to do next."""
    error = str(final.get("error") or "the transfer failed")
    results = final.get("files", [])
    errors = [error, *(str(r.get("error", "")) for r in results if r.get("failed"))]
    # A refusal is the receiver's decision, and a digest mismatch discards the part file
    # (l2fast.transfer.resume): sending again resumes neither. Anything else (the session
    # failed or closed, a stall, a timeout) left what arrived where a new send picks it up.
    # A source file that changed or cannot be mapped, or a peer whose LAN key is not ours:
    # the error says what to do about it.
    final_say = (
        any(r.get("rejected") for r in results)
        or any("digest" in e for e in errors)
        or bool(final.get("source_error"))
        or KEY_MISMATCH_MARK in error
    )
    if final_say:
        return L2fastError(error)
    if not results and not final.get("bytes_sent"):
        # No file got as far as an answer: there is nothing to resume, and the peer may not
        # be there at all (a mistyped MAC, a node not running l2fast).
        return L2fastError(error, hint=NOT_REACHED_HINT)
    return L2fastError(error, hint=RESUME_HINT)


def _event(msg: dict[str, Any], total: int, line: ProgressLine, js: JsonProgress | None) -> None:
    event = msg.get("event")
    if event == "progress":
        done = int(msg.get("bytes", 0))
        line.update(done, int(msg.get("total") or total))
        if js is not None:
            js.progress(done, int(msg.get("total") or total), files_done=msg["files_done"])
    elif event == "rejected" and js is not None:
        js.emit("rejected", path=msg["path"], reason=msg["reason"], text=msg["text"])
    elif event == "waiting" and js is not None:
        # Offers still held for a person (every few seconds): the wait goes on.
        js.emit("waiting", held=msg.get("held", []))


def _held(
    args: argparse.Namespace,
    msg: dict[str, Any],
    seen: set[int],
    line: ProgressLine,
    js: JsonProgress | None,
) -> None:
    """The receiver keeps a file until a person there decides: say once per file who must
    run what (PROTOCOL.md §FILE_HELD). Names and texts from the wire are shown escaped."""
    pending_id = int(msg.get("pending_id", 0))
    if pending_id in seen:
        return
    seen.add(pending_id)
    path, text = str(msg.get("path", "")), str(msg.get("text", ""))
    if js is not None:
        js.emit("held", path=path, pending_id=pending_id, text=text)
        return
    peer = display_name(args.peer)
    line.clear()
    if len(seen) <= HELD_LINES:
        print(
            f"{peer} holds '{display_name(path)}' until someone there accepts it: on {peer} run "
            f"`l2fast accept {pending_id}` (or `l2fast inbox`); waiting (Ctrl-C to cancel)",
            file=sys.stderr,
            flush=True,
        )
    elif len(seen) == HELD_LINES + 1:
        print(
            f"{peer} holds more files for a person: `l2fast inbox` on {peer} lists them",
            file=sys.stderr,
            flush=True,
        )


def _arrived_line(results: list[dict[str, Any]]) -> str | None:
    """For a send that failed: the files that arrived verified all the same, or None."""
    files = [r for r in results if r.get("kind") == "file"]
    verified = [r for r in files if r.get("verified")]
    if not verified:
        return None
    named = _some([display_name(r["final_name"]) for r in verified])
    count = f"{len(verified)} of {len(files)} files"
    return f"verified at the receiver before the failure: {count} ({named})"


def _summary(final: dict[str, Any], algo: str) -> None:
    """The text line of a verified send; `algo` is the digest used (--digest)."""
    results = final.get("files", [])
    sent = int(final.get("bytes_sent", 0))
    skipped = int(final.get("skipped_bytes", 0))
    present = int(final.get("files_present", 0))
    check = "; verified" + (f" {algo} {final['digest']}" if final.get("digest") else "")
    if len(results) == 1 and present:
        name = display_name(results[0]["final_name"])
        print(f"{name} is already at the receiver (same size and digest): nothing sent{check}")
        return
    if len(results) == 1:
        what = display_name(results[0]["final_name"])
    else:
        n_dirs = sum(1 for r in results if r.get("kind") == "directory")
        counts = ((len(results) - n_dirs, "file"), (n_dirs, "folder"))
        what = " and ".join(counted(n, w) for n, w in counts if n) or "0 files"
    # Bytes of files already there count as skipped too; the rest was resumed part files.
    present_bytes = sum(int(r.get("skipped_bytes", 0)) for r in results if r.get("present"))
    notes = []
    if present:
        notes.append(f"{present} already at the receiver ({format_bytes(present_bytes)}, not sent)")
    if skipped > present_bytes:
        notes.append(f"{format_bytes(skipped - present_bytes)} already there (resumed)")
    held = float(final.get("held_seconds", 0.0))
    if held >= 0.05:
        notes.append(f"after {held:.1f} s waiting for acceptance (not counted above)")
    print(
        f"sent {what}: {format_bytes(sent)} in {final.get('seconds', 0):.2f} s "
        f"({final.get('gbit_per_s', 0):.2f} Gbit/s)" + "".join(f", {n}" for n in notes) + check
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `l2fast send`."""
    parser = sub.add_parser(
        "send",
        help="send a file or a folder to a peer, verified end to end",
        description="Send a file or a directory tree over the link layer, as fast as the link "
        "allows; the receiver checks the digest of every file (SHA-256 by default) before "
        "placing it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("peer", metavar="PEER", help="MAC address or name of the peer")
    parser.add_argument("path", metavar="PATH", help="file or directory to send")
    parser.add_argument("--json", action="store_true", help="NDJSON progress and final event")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    parser.add_argument(
        "--digest",
        choices=("sha256", "blake2b"),
        default="sha256",
        help="end-to-end digest (default: sha256, checkable with sha256sum)",
    )
    parser.add_argument(
        "--follow-symlinks", action="store_true", help="send what symlinks in a folder point to"
    )
    add_node_arguments(parser, one_shot=True)
    parser.set_defaults(handler=run)
