"""Every event the file-transfer cores hand out, as frozen dataclasses (STYLE.md §2).

`OutgoingTransfer.next_event()` gives the sender's events, `IncomingTransfer.next_event()` the
receiver's; `TransferProgress`, `TransferDone` and `TransferFailed` come from both. Some
receiver events are requests to the adapter (the daemon): `OfferReceived` wants `accept` or
`reject`, `FileChunksComplete` wants `file_written`, `FileVerified` wants `file_placed`.

`transfer_id` is the FILE_OFFER's id, unique per direction of a session. Paths are the peer's
(relative, `/`-separated, untrusted on the receiver: the file layer sanitises them and a
display escapes them). Chunk ranges in events are file-relative (chunk 0 is the file's first),
so the adapter can match them with a resume bitmap without knowing the data-space layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from l2fast.errors import L2fastError
from l2fast.wire.constants import Digest, FileKind
from l2fast.wire.frames import WireRanges

__all__ = [
    "FileChunksComplete",
    "FileCompleted",
    "FileFailed",
    "FileReceived",
    "FileRejected",
    "FileReoffered",
    "FileVerified",
    "IncomingEvent",
    "OfferAccepted",
    "OfferHeld",
    "OfferReceived",
    "OfferRejected",
    "OutgoingEvent",
    "TransferDone",
    "TransferEvent",
    "TransferFailed",
    "TransferProgress",
]


# --- sender ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferAccepted:
    """The receiver accepted one of our offers: open the file and start its digest."""

    transfer_id: int
    #: Position of the entry in the list given to `OutgoingTransfer`.
    index: int
    path: str
    kind: FileKind
    size: int
    #: File-relative chunk ranges the receiver already holds (resume): they are not sent.
    have: WireRanges
    #: File bytes those chunks hold.
    skipped_bytes: int
    #: True when `digest_ready` must be called for this file (files and symlinks); directories
    #: and bench streams carry no digest.
    needs_digest: bool


@dataclass(frozen=True, slots=True)
class OfferRejected:
    """The receiver refused one of our offers (FILE_REJECT); the transfer goes on without it."""

    transfer_id: int
    index: int
    path: str
    #: FILE_REJECT `reason`, an `ErrorCode` value (refused, no_space, bad_name, ...).
    reason: int
    #: FILE_REJECT `text`: the peer's words, untrusted (show it with repr()).
    text: str


@dataclass(frozen=True, slots=True)
class OfferHeld:
    """The receiver keeps one of our offers until a person there decides (FILE_HELD,
    PROTOCOL.md §FILE_HELD). Nothing changes: the offer is still answered later, by
    OfferAccepted or OfferRejected; the adapter tells its user who must act."""

    transfer_id: int
    index: int
    path: str
    #: The receiver's inbox number for the offer (what `l2fast accept` takes there).
    pending_id: int
    #: FILE_HELD `text`: the receiver's note, untrusted (escape it to print).
    text: str


@dataclass(frozen=True, slots=True)
class FileCompleted:
    """The receiver confirmed one file with FILE_RESULT status 0."""

    transfer_id: int
    index: int
    path: str
    kind: FileKind
    #: True when the receiver compared digests and they matched (files and symlinks); False
    #: for kinds without a digest (directory, bench), which complete on the receiver's word.
    verified: bool
    #: The digest we sent in FILE_END (empty for kinds without one).
    digest: bytes
    #: Where it landed, relative to the receiver's receive directory ("" when not placed).
    final_name: str
    #: File bytes this transfer had to move (size minus what the receiver held), each counted
    #: once: retransmissions are `OutgoingTransfer.retransmitted_bytes`.
    needed_bytes: int
    #: File bytes the receiver already held (resume savings).
    skipped_bytes: int
    #: FILE_RESULT `bytes_received`, the receiver's count of the same thing as `needed_bytes`.
    bytes_received: int
    #: True when the receiver held every chunk before the transfer (FILE_ACCEPT `have`
    #: covered the whole file) and no data was sent: a file it already had under that name,
    #: or a complete part file. Always False for an empty file (it has no chunks to hold).
    present: bool = False


@dataclass(frozen=True, slots=True)
class FileReoffered:
    """The receiver holds a different file of the same name and size (FILE_RESULT `differs`
    for a file it had answered as already present): the entry is offered again, as entry
    `new_index` (transfer_id `new_index + 1`), whose data is sent. `index`'s file ended."""

    transfer_id: int
    index: int
    path: str
    #: Position of the new entry in the transfer's list (the adapter maps it to the same
    #: source); its FileEntry is the old one's, placed after the last file in the data space.
    new_index: int


@dataclass(frozen=True, slots=True)
class FileFailed:
    """One offered file will not complete (digest mismatch, receiver error, timeout, end)."""

    transfer_id: int
    index: int
    path: str
    #: An `ErrorCode` value (digest_mismatch, io_error, no_space, timeout, ...).
    code: int
    #: What went wrong, for a user; a RemoteProtocolError when the receiver said so.
    error: L2fastError
    #: The receiver's own words from its FILE_RESULT (raw peer text: escape it to print).
    text: str = ""


# --- receiver ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferReceived:
    """The peer offers a file: answer with `accept(transfer_id, ...)` or `reject(...)`.

    Every field is the peer's, unchecked beyond the codec's rules: the file layer must
    sanitise `path`, check free space against `size` and refuse what it does not want.
    """

    session: int
    peer: bytes
    transfer_id: int
    kind: FileKind
    path: str
    size: int
    mode: int
    mtime_ns: int
    #: The one digest algorithm the sender will use in FILE_END.
    digest: Digest
    chunk_size: int
    #: Number of chunks (the size split by chunk_size); resume `have` ranges index these.
    chunks: int
    #: Where the chunks sit in the session's data space (for the C receive loop's map).
    first_chunk: int


@dataclass(frozen=True, slots=True)
class FileChunksComplete:
    """Every chunk of an accepted file has arrived: finish writing it, then `file_written`."""

    transfer_id: int
    path: str


@dataclass(frozen=True, slots=True)
class FileVerified:
    """FILE_END's digest equals the written data's: fsync and rename, then `file_placed`."""

    transfer_id: int
    path: str
    digest: bytes


@dataclass(frozen=True, slots=True)
class FileReceived:
    """A file is complete and placed, and FILE_RESULT status 0 went to the sender."""

    transfer_id: int
    path: str
    kind: FileKind
    #: Where it landed, relative to the receive directory ("" for a bench stream).
    final_name: str
    #: The digest both ends agree on (empty for a directory or a bench stream).
    digest: bytes
    #: Bytes that came over the wire for it (its size minus what we held before).
    bytes_received: int
    size: int
    #: True when the file was already here under `final_name` with the same content: nothing
    #: was received or written (PROTOCOL.md §Files already at the receiver).
    present: bool = False


@dataclass(frozen=True, slots=True)
class FileRejected:
    """A file offered to us will not be received: refused, failed its check, or cut short."""

    transfer_id: int
    path: str
    #: An `ErrorCode` value: refused/bad_name/no_space (our refusal), digest_mismatch,
    #: io_error, timeout (the transfer ended first), differs (a file answered as present
    #: differs from the one here: the sender offers it again).
    code: int
    text: str
    #: True when the file had been accepted (a part file may exist: keep it for resume, or
    #: delete it after a digest mismatch).
    after_accept: bool


# --- both --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """Progress of the data (at most every `TransferConfig.progress_interval`)."""

    #: Sender: bytes acknowledged by the receiver; receiver: bytes received. Chunks the
    #: receiver held before (resume) are not counted.
    bytes_done: int
    #: The bytes to move for every file accepted so far.
    bytes_total: int
    #: Files finished (any outcome) and files known (offered) so far.
    files_done: int
    files_total: int


@dataclass(frozen=True, slots=True)
class TransferDone:
    """Every file ended (sender: every entry; receiver: the session closed in order)."""

    files_verified: int
    files_failed: int
    files_rejected: int
    #: Bytes that crossed the wire for verified files, and bytes resume saved.
    bytes_sent: int
    bytes_skipped: int
    #: Of `files_verified`, those already at the receiver, so not sent (`present`).
    files_present: int = 0


@dataclass(frozen=True, slots=True)
class TransferFailed:
    """The transfer as a whole stopped before every file ended.

    Files still running got FileFailed (sender) or FileRejected (receiver) first.
    """

    #: "stalled" (no data progress, TransferStalled), "session" (the session closed or
    #: failed), "cancelled" (by `cancel`).
    reason: str
    #: An `ErrorCode` value.
    code: int
    error: L2fastError
    #: Files that had not ended when it stopped.
    unfinished: int


#: What `OutgoingTransfer.next_event()` can return.
OutgoingEvent: TypeAlias = (
    OfferAccepted
    | OfferHeld
    | OfferRejected
    | FileCompleted
    | FileFailed
    | FileReoffered
    | TransferProgress
    | TransferDone
    | TransferFailed
)

#: What `IncomingTransfer.next_event()` can return.
IncomingEvent: TypeAlias = (
    OfferReceived
    | FileChunksComplete
    | FileVerified
    | FileReceived
    | FileRejected
    | TransferProgress
    | TransferDone
    | TransferFailed
)

#: Every transfer event.
TransferEvent: TypeAlias = OutgoingEvent | IncomingEvent
