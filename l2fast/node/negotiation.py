"""What a handshake settles, and the rules for settling it (PROTOCOL.md §SYN, SYN_ACK).

`negotiate` is the responder's side (choose from a SYN), `check_syn_ack` the initiator's
(accept the responder's choices only if they are ones it offered). Both raise
RemoteProtocolError carrying the wire error code to send or report.
"""

from __future__ import annotations

from l2fast.errors import RemoteProtocolError
from l2fast.node.config import NodeConfig
from l2fast.node.events import SessionParams
from l2fast.wire.constants import MIN_MTU, Digest, ErrorCode, Features
from l2fast.wire.frames import Syn, SynAck

__all__ = ["check_syn_ack", "negotiate"]


def _pick_digest(offered: int) -> Digest | None:
    # SHA-256 is the default (PROTOCOL.md §SYN); BLAKE2b only when it is all both share.
    for choice in (Digest.SHA256, Digest.BLAKE2B_256):
        if offered & choice:
            return choice
    return None


def negotiate(syn: Syn, config: NodeConfig, local_mtu: int) -> SessionParams:
    """The responder's choices for `syn` (PROTOCOL.md §SYN, SYN_ACK, §Version negotiation).

    Raises RemoteProtocolError with code no_common_version or bad_request when there is no
    common version or digest, or the SYN's MTU or window is unusable.
    """
    low, high = max(syn.ver_min, config.ver_min), min(syn.ver_max, config.ver_max)
    if low > high:
        raise RemoteProtocolError(
            f"peer speaks versions {syn.ver_min}..{syn.ver_max}, we speak "
            f"{config.ver_min}..{config.ver_max}",
            code=ErrorCode.NO_COMMON_VERSION,
        )
    digest = _pick_digest(syn.digests & config.digests)
    if digest is None:
        raise RemoteProtocolError(
            f"no common digest (peer offers {syn.digests:#x})", code=ErrorCode.BAD_REQUEST
        )
    if syn.window == 0:
        raise RemoteProtocolError("SYN offers a window of 0 frames", code=ErrorCode.BAD_REQUEST)
    features = Features(syn.features & config.features)
    return SessionParams(
        version=high,
        mtu=min(syn.mtu, local_mtu),
        local_window=config.window,
        peer_window=syn.window,
        features=features,
        compression=bool(features & Features.ZLIB),
        digest=digest,
    )


def check_syn_ack(body: SynAck, config: NodeConfig, local_mtu: int) -> SessionParams:
    """The parameters a SYN_ACK settles, if its choices are ones we offered.

    Raises RemoteProtocolError (no_common_version or bad_request) otherwise.
    """
    if not config.ver_min <= body.ver_max <= config.ver_max:
        raise RemoteProtocolError(
            f"peer chose version {body.ver_max}, we speak {config.ver_min}..{config.ver_max}",
            code=ErrorCode.NO_COMMON_VERSION,
        )
    if not MIN_MTU <= body.mtu <= local_mtu:
        raise RemoteProtocolError(
            f"peer chose MTU {body.mtu}, outside {MIN_MTU}..{local_mtu}",
            code=ErrorCode.BAD_REQUEST,
        )
    if body.features & ~config.features:
        raise RemoteProtocolError(
            f"peer chose features {body.features:#x} we did not offer", code=ErrorCode.BAD_REQUEST
        )
    if not body.digests & config.digests or body.digests & (body.digests - 1):
        raise RemoteProtocolError(
            f"peer chose digest {body.digests:#x}, not one we offered", code=ErrorCode.BAD_REQUEST
        )
    if body.window == 0:
        raise RemoteProtocolError("SYN_ACK offers a window of 0", code=ErrorCode.BAD_REQUEST)
    features = Features(body.features)
    return SessionParams(
        version=body.ver_max,
        mtu=body.mtu,
        local_window=config.window,
        peer_window=body.window,
        features=features,
        compression=bool(features & Features.ZLIB),
        digest=Digest(body.digests),
    )
