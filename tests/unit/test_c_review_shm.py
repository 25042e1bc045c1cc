"""Review tests for the shared-memory side of the C data path (csrc/ring.c, writer.c, rxpath.c).

A ring region is shared with another process, so every value read from it -- counters and
descriptors -- must be read once, checked, and then used (never read again after the check).
These tests compile tiny C harnesses against the sources with ASan + UBSan, or drive the binding
in a child process, so that a crash or hang shows up as a failed test rather than a dead run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
CC = shutil.which("gcc") or shutil.which("clang")


def build_and_run(
    tmp_path: Path, source: str, units: list[str], flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Compile `source` with the given csrc/ units under ASan + UBSan and run it."""
    if CC is None:
        pytest.skip("no C compiler")
    src = tmp_path / "harness.c"
    src.write_text(textwrap.dedent(source))
    exe = tmp_path / "harness"
    subprocess.run(
        [
            CC,
            "-O1",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-Wall",
            "-Wextra",
            f"-I{CSRC}",
            *flags,
            str(src),
            *(str(CSRC / u) for u in units),
            "-o",
            str(exe),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return subprocess.run(
        [str(exe), str(tmp_path / "region")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# The region is a file mapped MAP_SHARED and the writer's output fd is that same file, so the
# writer's own pwritev of one chunk rewrites the next descriptor between its bounds check and its
# use: a deterministic stand-in for another process scribbling on the ring at the worst moment.
WRITER_TOCTOU = r"""
    #define _GNU_SOURCE
    #include <fcntl.h>
    #include <stdio.h>
    #include <string.h>
    #include <sys/mman.h>
    #include <unistd.h>
    #include "datapath.h"

    int main(int argc, char **argv)
    {
        (void)argc;
        const uint32_t nslots = 4, slot = 128, cs = 8;
        int64_t size = l2f_ring_size(nslots, slot); /* 512 + 96 -> 640 + 4 * 128 = 1152 */
        int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || size != 1152 || ftruncate(fd, size))
            return 90;
        uint8_t *m = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED || l2f_ring_init(m, (uint64_t)size, nslots, slot))
            return 91;
        struct l2f_ring r;
        if (l2f_ring_attach(&r, m, (uint64_t)size))
            return 92;
        /* desc[1] lives at 536..559: seq, then payload_off at 544 and payload_len at 548.
         * desc[0] is chunk 68 = file bytes 544..551, so writing it rewrites desc[1]'s
         * payload_off to 256 (two slots further on) and keeps its payload_len at 8. */
        struct l2f_desc d[2] = {{68, 0, 8, 0, 0}, {10, 0, 8, 0, 0}};
        uint8_t pay[2][8];
        uint32_t evil[2] = {256, 8};
        memcpy(pay[0], evil, 8);
        memset(pay[1], 'A', 8);
        if (l2f_ring_push(&r, d, 2, &pay[0][0], sizeof pay, 8) != 2)
            return 93;
        memset(r.slots + 3 * slot, 'X', slot); /* what desc[1] must never be written from */
        struct l2f_writer_stats st;
        memset(&st, 0, sizeof st);
        int64_t w = l2f_writer_drain(&r, fd, 0, cs, (uint64_t)size, 16, 0, &st);
        char got[9] = {0};
        if (pread(fd, got, 8, 10 * cs) != 8)
            return 94;
        printf("drain=%lld chunk10=%s refused=%llu\n", (long long)w, got,
               (unsigned long long)st.refused);
        return strcmp(got, "AAAAAAAA") == 0 ? 0 : 1;
    }
"""


def test_writer_uses_the_descriptor_it_checked(tmp_path: Path) -> None:
    proc = build_and_run(tmp_path, WRITER_TOCTOU, ["ring.c", "writer.c"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_child(code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (a crash or a hang must not take pytest with it)."""
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child hung for {timeout} s")


# A writer process that scribbles its ring's counters (head far ahead, tail between) must not
# send the receive loop round a 2^62-step reclaim loop: the loop must stay bounded by nslots.
SCRIBBLED_COUNTERS = """
    import socket, struct
    from l2fast.native import datapath as dp

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ring = dp.ShmRing(64, 256)
    written = bytearray(dp.written_bitmap_size(100 * 1000, 100))
    rx = dp.RxPath(a, [ring], session=1, chunk_size=100, file_size=100 * 1000, written=written)
    struct.pack_into("=Q", ring._mm, 128, 1 << 63)  # head
    struct.pack_into("=Q", ring._mm, 256, 1 << 62)  # tail
    fb = rx.feedback()
    run = rx.run(0.0)
    print("ok", fb.free_slots, run.stop)
"""


def test_scribbled_ring_counters_do_not_hang_the_receive_loop() -> None:
    proc = run_child(SCRIBBLED_COUNTERS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok 0 "), proc.stdout


# A control frame longer than the caller's control slot is cut to the slot; the length reported
# for it must be what was copied, or a caller reading ctrl_lens[i] bytes runs past its slot (past
# the arena for the last one: ASan flags the read below).
CTRL_LEN = r"""
    #define _GNU_SOURCE
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/socket.h>
    #include "datapath.h"

    int main(void)
    {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv))
            return 90;
        int64_t size = l2f_ring_size(8, 256);
        uint8_t *region = aligned_alloc(64, (size_t)size);
        if (!region || l2f_ring_init(region, (uint64_t)size, 8, 256))
            return 91;
        struct l2f_rx_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = sv[0];
        cfg.ethertype = L2F_DEFAULT_ETHERTYPE;
        cfg.session = 1;
        cfg.chunk_size = 100;
        cfg.file_size = 1000;
        cfg.window = 64;
        cfg.batch = 4;
        struct l2f_rx *rx;
        if (l2f_rx_new(&cfg, &rx) || l2f_rx_add_ring(rx, region, (uint64_t)size) != 0)
            return 92;
        static const uint8_t mac[6] = {2, 0, 0, 0, 0, 1};
        uint8_t frame[38 + 100], body[100];
        memset(body, 'c', sizeof body);
        l2f_build_header(frame, sizeof frame, mac, mac, L2F_DEFAULT_ETHERTYPE, 0x30, 0, 1, 0, body,
                         sizeof body);
        memcpy(frame + 38, body, sizeof body);
        if (send(sv[1], frame, sizeof frame, 0) != (ssize_t)sizeof frame)
            return 93;
        const uint32_t slot = 64;
        uint8_t *ctrl = malloc(slot); /* exactly one control slot */
        uint32_t lens[1], count = 0;
        int rc = l2f_rx_run(rx, 8, 0, ctrl, slot, slot, lens, 1, &count);
        if (rc < 0 || count != 1)
            return 94;
        uint8_t copy[256];
        memcpy(copy, ctrl, lens[0]); /* what a caller does with the reported length */
        printf("len=%u slot=%u\n", lens[0], slot);
        free(ctrl);
        l2f_rx_free(rx);
        free(region);
        return lens[0] <= slot ? 0 : 1;
    }
"""


def test_control_length_is_what_was_copied(tmp_path: Path) -> None:
    proc = build_and_run(tmp_path, CTRL_LEN, ["rxpath.c", "ring.c", "frame.c", "crc32c.c"])
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


# l2f_ring_push checks the caller's descriptors, then copies payloads at their payload_off: a
# second thread changing a descriptor in between (the binding releases the GIL during the call)
# made it write outside the slot.  Runs the race for 2 s: before the fix ASan stopped it within
# milliseconds in 9 runs out of 10 (a race, so not every time); after it, it never does.
PUSH_RACE = r"""
    #define _GNU_SOURCE
    #include <pthread.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <time.h>
    #include "datapath.h"

    #define N 64
    static struct l2f_desc descs[N];
    static volatile int stop;

    static void *flipper(void *arg)
    {
        (void)arg;
        while (!stop) {
            __atomic_store_n(&descs[N - 1].payload_off, 0u, __ATOMIC_RELAXED);
            __atomic_store_n(&descs[N - 1].payload_off, 100000u, __ATOMIC_RELAXED);
        }
        return NULL;
    }

    int main(void)
    {
        int64_t size = l2f_ring_size(N, 64);
        uint8_t *region = aligned_alloc(64, (size_t)size);
        struct l2f_ring r;
        if (l2f_ring_init(region, (uint64_t)size, N, 64) ||
            l2f_ring_attach(&r, region, (uint64_t)size))
            return 90;
        for (int j = 0; j < N; j++)
            descs[j].payload_len = 8;
        static uint8_t pay[8 * N], out[8 * N];
        static struct l2f_desc o[N];
        pthread_t t;
        pthread_create(&t, NULL, flipper, NULL);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long i = 0;
        for (;; i++) {
            int k = l2f_ring_push(&r, descs, N, pay, sizeof pay, 8);
            if (k > 0 && l2f_ring_pop(&r, o, N, out, sizeof out, 8) != k)
                return 91;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (t1.tv_sec - t0.tv_sec >= 2) /* ~1 ms to a finding before the fix */
                break;
        }
        stop = 1;
        pthread_join(t, NULL);
        printf("iterations %ld, no overflow\n", i);
        free(region);
        return 0;
    }
"""


def test_push_uses_the_descriptor_it_checked(tmp_path: Path) -> None:
    proc = build_and_run(tmp_path, PUSH_RACE, ["ring.c"], ("-pthread",))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "no overflow" in proc.stdout
