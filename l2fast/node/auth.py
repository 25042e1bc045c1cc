"""The LAN key and the keys a node derives from it (PROTOCOL.md §Authentication).

Every node of a LAN that is to trust the others holds the same 32-byte secret (`l2fast keygen`
writes one; `l2fast daemon --key FILE` reads it). From it a node derives:

- the group key, which seals HELLO, HELLO_ACK, SYN and frames outside any session: it proves
  the sender holds the LAN key;
- one session key per session, from a root key of its own (also derived from the LAN key),
  both MACs, the session id and a fresh nonce from each end (SYN's and SYN_ACK's trailers).
  Everything else on the session is sealed with it, so frames recorded from one session are
  refused in any other.

Sans-IO: `LanKey` computes, the engine (`l2fast.node.node`) decides which key seals or checks
which frame. The nonce source is injectable so that a seeded test run is reproducible.
"""

from __future__ import annotations

import errno
import hmac
import os
import stat
import struct
from collections.abc import Callable
from pathlib import Path

from l2fast.errors import L2fastError
from l2fast.wire.auth import NONCE_LEN, TagKey, compute_tag

__all__ = ["KEY_LEN", "LanKey", "generate_key_file", "load_key_file"]

KEY_LEN = 32
_SESSION = struct.Struct("!6s6sI")


class LanKey:
    """A LAN key: the group key, session keys, nonces and the tag check."""

    def __init__(self, secret: bytes, *, nonces: Callable[[int], bytes] = os.urandom) -> None:
        if len(secret) != KEY_LEN:
            raise ValueError(f"a LAN key is {KEY_LEN} bytes, not {len(secret)}")
        self.group = TagKey(hmac.digest(secret, b"l2fast v1 group key", "sha256"))
        # Session keys come from a key of their own, never from the one whose (truncated)
        # HMACs travel as tags: no tag can ever be the first half of a session key.
        self._session_root = TagKey(hmac.digest(secret, b"l2fast v1 session keys", "sha256"))
        #: Names the key in `l2fast status` and logs without revealing it: two nodes show the
        #: same id exactly when they hold the same key.
        self.key_id = hmac.digest(secret, b"l2fast v1 key id", "sha256")[:8].hex()
        self._nonces = nonces

    def nonce(self) -> bytes:
        """A fresh nonce for a SYN or SYN_ACK."""
        nonce = self._nonces(NONCE_LEN)
        if len(nonce) != NONCE_LEN:
            raise ValueError(f"the nonce source gave {len(nonce)} bytes, not {NONCE_LEN}")
        return nonce

    def session_key(
        self,
        initiator: bytes,
        responder: bytes,
        session_id: int,
        initiator_nonce: bytes,
        responder_nonce: bytes,
    ) -> TagKey:
        """The key that seals session `session_id` between these two MACs."""
        info = _SESSION.pack(initiator, responder, session_id)
        message = b"l2fast v1 session" + info + initiator_nonce + responder_nonce
        return TagKey(self._session_root.digest(message))

    @staticmethod
    def verify(key: TagKey, covered: bytes, tag: bytes) -> bool:
        """Whether `tag` seals `covered` under `key` (in constant time)."""
        return hmac.compare_digest(compute_tag(key, covered), tag)


def _key_error(path: Path, problem: str, hint: str) -> L2fastError:
    return L2fastError(f"LAN key {path}: {problem}", hint=hint)


def load_key_file(path: str | Path) -> LanKey:
    """Read a key file written by `l2fast keygen`: 64 hex digits (a trailing newline is fine).

    Refuses, with what to do next, a file that is missing, not a regular file, readable or
    writable by group or others, owned by a user other than root or the one reading it, or
    not a key.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _key_error(
            path,
            "no such file",
            f"create one with `l2fast keygen -o {path}` and copy it to every host",
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW: a link could point anywhere root can read
            raise _key_error(
                path, "is a symbolic link", "give the path of the key file itself"
            ) from None
        raise _key_error(
            path, exc.strerror or str(exc), "check the path and its permissions"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _key_error(path, "not a regular file", "give the file `l2fast keygen` wrote")
        if info.st_mode & 0o077:
            raise _key_error(
                path,
                f"mode {stat.S_IMODE(info.st_mode):04o} lets other users read or change it",
                f"chmod 600 {path}",
            )
        reader = os.geteuid()
        if info.st_uid not in (0, reader):
            # Its owner could replace it (mode bits are theirs to change), and so choose the
            # key a root daemon trusts: sshd refuses such files for the same reason.
            raise _key_error(
                path,
                f"owned by uid {info.st_uid}, who could replace it",
                f"chown {'root' if reader == 0 else reader} {path}",
            )
        raw = os.read(fd, 256)
    finally:
        os.close(fd)
    text = raw.decode("ascii", "replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != KEY_LEN:
        raise _key_error(
            path,
            f"not a key (expected {2 * KEY_LEN} hex digits)",
            # keygen never writes over a file: it must go first (and every host then needs
            # the new key, since this one is lost).
            f"copy the LAN's key file here again, or replace it on every host: "
            f"`rm {path}; l2fast keygen -o {path}`",
        )
    return LanKey(secret)


def generate_key_file(path: str | Path) -> LanKey:
    """Write a new random key to `path` (mode 0600; never over an existing file)."""
    path = Path(path)
    secret = os.urandom(KEY_LEN)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        if path.is_dir() and not path.is_symlink():
            raise _key_error(
                path, "is a directory", f"name the file to write, e.g. -o {path / 'l2fast.key'}"
            ) from None
        raise _key_error(
            path, "already exists", "keep it, or remove it first to replace the LAN's key"
        ) from None
    except OSError as exc:
        raise _key_error(path, exc.strerror or str(exc), "choose a writable path with -o") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, secret.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise _key_error(
            path, exc.strerror or str(exc), "check free space and permissions"
        ) from None
    os.close(fd)
    return LanKey(secret)
