"""Tunables of the file-transfer cores (`OutgoingTransfer`, `IncomingTransfer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from l2fast.transfer.receiver import RxConfig
from l2fast.transfer.reliability import TxConfig

__all__ = ["TransferConfig"]


@dataclass(frozen=True, slots=True)
class TransferConfig:
    """Pipelining bounds, timeouts and the reliability cores' tuning. Times are in seconds."""

    #: Offers sent and not yet answered (FILE_ACCEPT / FILE_REJECT). Many small files go
    #: through one session without a round trip each: offers for the next files go out while
    #: earlier files' data flows. The bound keeps a receiver that answers `ask` slowly from
    #: being handed a whole tree of questions at once.
    max_offers_outstanding: int = 128
    #: Files offered and not yet ended. Each holds a part file open on the receiver and a file
    #: (or mapping) on the sender, so this bounds open files on both ends.
    max_unfinished: int = 512
    #: After FILE_END, wait this long for FILE_RESULT before failing the file (the receiver
    #: fsyncs and renames before answering; a hung receiver must not hang the sender).
    result_timeout: float = 60.0
    #: Fail an offer left unanswered this long; None waits for as long as the session lives
    #: (an `ask` policy waits for a person).
    decision_timeout: float | None = None
    #: TransferProgress at most this often.
    progress_interval: float = 0.25
    #: The smallest chunk a receiver takes for a file with data; an offer of smaller ones is
    #: refused `bad_request` (`bad_offer`). A file's bookkeeping grows with its chunk count, so
    #: the daemon asks for what a DATA frame carries at the smallest MTU (PROTOCOL.md §Limits);
    #: 1, the codec's bound, takes any.
    min_chunk_size: int = 1
    #: The sender's `TxWindow` and the receiver's `RxTracker`.
    tx: TxConfig = field(default_factory=TxConfig)
    rx: RxConfig = field(default_factory=RxConfig)
