"""A receiving NodeService and a bare sending runner on the in-memory segment of
tests/fake_wire.py: what a daemon does with the control frames a peer sends it, without
namespaces or processes (as long as the offers need none: refused, held or empty files)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from l2fast.daemon.runner import NodeRunner
from l2fast.daemon.service import NodeService
from l2fast.node.config import NodeConfig
from l2fast.node.events import ControlReceived, Event, SessionOpened
from l2fast.node.node import NodeEngine
from l2fast.node.states import SessionState
from l2fast.wire.frames_transfer import FileAccept, FileEnd, FileHeld, FileOffer, FileReject
from tests.fake_wire import FakeHub

T = TypeVar("T")

FAST = NodeConfig(handshake_timeout=0.5, ctrl_give_up=1.0, dead_after=1.0)


def make_runner(hub: FakeHub, index: int, name: str) -> NodeRunner:
    sock = hub.socket(index)
    engine = NodeEngine(sock.mac, name, sock.mtu, rng=random.Random(index), config=FAST)
    runner = NodeRunner(sock, engine)
    engine.start(runner.now())
    return runner


def pump(runners: list[NodeRunner], until: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = runners[0].clock() + timeout
    while not until():
        if runners[0].clock() > deadline:
            return False
        for runner in runners:
            runner.step(0.001)
    return True


class Nodes:
    """A sender's bare runner (`a`) and a receiver with a NodeService (`b`, `service`) under
    the `accept` policy; `answers` are the control bodies `a` received."""

    def __init__(self, hub: FakeHub, recv_dir: Path, accept: str = "none") -> None:
        self.a = make_runner(hub, 1, "alpha")
        self.b = make_runner(hub, 2, "bravo")
        self.service = NodeService(self.b, one_shot=False, recv_dir=str(recv_dir), accept=accept)
        self.opened: list[SessionOpened] = []
        self.answers: list[object] = []
        self.a.subscribe(self.on_a_event)

    def on_a_event(self, ev: Event) -> None:
        if isinstance(ev, SessionOpened):
            self.opened.append(ev)
        elif isinstance(ev, ControlReceived):
            self.answers.append(ev.body)

    def open(self) -> int:
        sid = self.a.engine.open_session(self.b.engine.mac, self.a.now())
        assert pump([self.a, self.b], lambda: any(o.session == sid for o in self.opened))
        return sid

    def send(self, sid: int, *bodies: FileOffer | FileEnd) -> None:
        for body in bodies:
            self.a.engine.send_control(self.b.engine.mac, sid, body, self.a.now())
        self.a.flush()

    def close(self, sid: int) -> None:
        assert self.a.engine.close_session(self.b.engine.mac, sid, self.a.now())

        def forgotten() -> bool:
            ended = all(
                s.state in (SessionState.CLOSED, SessionState.FAILED)
                for s in self.b.engine.sessions()
                if s.session == sid
            )
            return ended and sid not in self.service.transfers.incoming

        assert pump([self.a, self.b], forgotten)

    def answers_of(self, kind: type[T]) -> list[T]:
        """The control bodies of `kind` that `a` received, in order."""
        return [b for b in self.answers if isinstance(b, kind)]

    def wait_answers(self, n: int) -> None:
        """Turn both loops until `a` has had `n` offers answered (accepted, refused or held)."""
        kinds = (FileAccept, FileReject, FileHeld)
        done = lambda: sum(isinstance(b, kinds) for b in self.answers) >= n  # noqa: E731
        assert pump([self.a, self.b], done), self.answers

    def status(self) -> dict[str, object]:
        return self.service.status()

    def settle(self, check: Callable[[dict[str, object]], bool]) -> dict[str, object]:
        assert pump([self.a, self.b], lambda: check(self.status())), self.status()
        return self.status()
