"""The file-transfer protocol core, sans-IO: `OutgoingTransfer` and `IncomingTransfer`.

This module is the public face of the package's file layer; the parts live beside it:
`protocol_outgoing` (sender), `protocol_incoming` (receiver), `protocol_states` (the per-file
transition table), `protocol_space` (entries, chunk layout, the sender's window map) and
`protocol_config`. Events are in `l2fast.transfer.events`. Nothing here touches a socket, a
file, a clock or a process: the adapter (the daemon, or the one-shot CLI engine) moves control
bodies to and from the session, DATA and FEEDBACK through the C data path, and bytes to and from
the disk, and reports back in batches.

The exchange for one file (PROTOCOL.md §FILE_OFFER .. §FILE_RESULT), everything but DATA and
FEEDBACK on the session's reliable control stream:

    sender                                          receiver
    FILE_OFFER (id, kind, size, first_chunk ...) ─►  OfferReceived → accept / reject
                    ◄─ FILE_HELD (pending id, note): only with feature HELD, when a person
                       must decide (`hold`); the sender reports OfferHeld and waits
                    ◄─ FILE_ACCEPT (have: chunks held, resume) | FILE_REJECT (reason, text)
    DATA for the chunks not held  ─────────────────►  on_chunks (batches)
                    ◄─ FEEDBACK (cum_ack, SACK, credit) every ~1 ms
    every chunk acknowledged + digest known:
    FILE_END (digest) ─────────────────────────────►  + file written, digest known
                                                      → compare → place
                    ◄─ FILE_RESULT (0 or digest_mismatch / io_error ..., final_name)

Rules the two cores agree on (beyond PROTOCOL.md):

- Offers are pipelined: up to `TransferConfig.max_offers_outstanding` unanswered and
  `max_unfinished` not yet ended, so many small files cost neither a round trip nor a
  handshake each. A file's chunk run follows the previous file's in the data space.
- A directory has no data and no digest: the sender sends no FILE_END for it, and the receiver
  answers its FILE_ACCEPT with FILE_RESULT at once (having created it).
- A bench stream (kind 3) is counted and discarded: its FILE_END carries an empty digest and
  FILE_RESULT status 0 confirms the byte count, not a digest.
- FILE_RESULT status 0 is valid only after FILE_END and must carry the sender's digest; a
  non-zero status may end a file any time after acceptance (the receiver could not write it).
- A file the receiver already holds under its name and size is accepted with every chunk held
  (`accept(present=True)`); FILE_END's digest then confirms it (FILE_RESULT 0, nothing written)
  or FILE_RESULT `differs` makes the sender offer it again as a new entry (PROTOCOL.md §Files
  already at the receiver).
- The receiver records the chunks it will not be sent (held before, refused files, gaps) as
  received at once, so the cumulative ack and the credit move past them; the sender leaves
  them out of its window through `SendSpace`.
"""

from __future__ import annotations

from l2fast.transfer.events import (
    FileChunksComplete,
    FileCompleted,
    FileFailed,
    FileReceived,
    FileRejected,
    FileReoffered,
    FileVerified,
    IncomingEvent,
    OfferAccepted,
    OfferHeld,
    OfferReceived,
    OfferRejected,
    OutgoingEvent,
    TransferDone,
    TransferEvent,
    TransferFailed,
    TransferProgress,
)
from l2fast.transfer.protocol_config import TransferConfig
from l2fast.transfer.protocol_incoming import IncomingTransfer
from l2fast.transfer.protocol_outgoing import OutgoingTransfer
from l2fast.transfer.protocol_space import (
    ChunkSpan,
    FileEntry,
    FileLayout,
    chunk_count,
    held_bytes,
)
from l2fast.transfer.protocol_states import FileState
from l2fast.wire.frames import (
    Body,
    FileAccept,
    FileEnd,
    FileHeld,
    FileOffer,
    FileReject,
    FileResult,
)

__all__ = [
    "ChunkSpan",
    "FileChunksComplete",
    "FileCompleted",
    "FileEntry",
    "FileFailed",
    "FileLayout",
    "FileReceived",
    "FileRejected",
    "FileReoffered",
    "FileState",
    "FileVerified",
    "IncomingEvent",
    "IncomingTransfer",
    "OfferAccepted",
    "OfferHeld",
    "OfferReceived",
    "OfferRejected",
    "OutgoingEvent",
    "OutgoingTransfer",
    "TransferConfig",
    "TransferDone",
    "TransferEvent",
    "TransferFailed",
    "TransferProgress",
    "chunk_count",
    "for_sender",
    "held_bytes",
    "is_file_frame",
]

_TO_SENDER = (FileAccept, FileReject, FileResult, FileHeld)
_TO_RECEIVER = (FileOffer, FileEnd)  # FileInline is a FileOffer


def is_file_frame(body: Body) -> bool:
    """True for the seven FILE_* bodies (the adapter routes these to a transfer core)."""
    return isinstance(body, _TO_SENDER + _TO_RECEIVER)


def for_sender(body: Body) -> bool:
    """True when a FILE_* body goes to our `OutgoingTransfer` (an answer to our offers),
    False when it goes to our `IncomingTransfer` (the peer's offers and FILE_ENDs)."""
    return isinstance(body, _TO_SENDER)
