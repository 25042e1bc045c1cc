"""The CRC helper thread of the C sender (csrc/txpath.c) under ThreadSanitizer.

Two threads send rounds of out-of-order chunk ranges at once over AF_UNIX datagram pairs with a
small send buffer (so calls stop mid-window on backpressure, and at 300 frames a call): one
sender gets the process's helper window, the other builds its own. Receivers check every frame:
verdict, sequence number, length and payload bytes, in order. TSan must report nothing; a copy
of txpath.c with the helper's release store of ready[] weakened to relaxed must make it report a
data race, so the harness can fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[2] / "csrc"
CC = shutil.which("gcc")

HARNESS = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <poll.h>
#include <unistd.h>
#include "datapath.h"
#include "l2fast_core.h"

#define CHUNK 1000u
#define FILE_SIZE (1000u * 700u + 123u)
#define NCHUNKS ((FILE_SIZE + CHUNK - 1) / CHUNK)
#define FIRST 5u
#define ROUNDS 40

static uint8_t data[FILE_SIZE];

/* Round r's ranges: out of order, window-crossing, some short. Same on both sides. */
static uint32_t ranges_of(unsigned r, uint64_t *rg)
{
    uint64_t end = FIRST + NCHUNKS;
    uint32_t n = 0;
    uint64_t a = FIRST + (r * 37u) % NCHUNKS;
    uint64_t len = 1 + (r * 131u) % 900u;
    uint64_t b = a + len < end ? a + len : end;
    rg[n++] = a; rg[n++] = b;
    rg[n++] = FIRST; rg[n++] = FIRST + 1 + r % 20u;
    if (r % 3 == 0) { rg[n++] = end - 1; rg[n++] = end; }
    return n / 2;
}

struct side { int tx, rx; long frames; int bad; struct l2f_tx_stats st; };

static void *receiver(void *arg)
{
    struct side *s = arg;
    static __thread uint8_t buf[4096];
    for (unsigned r = 0; r < ROUNDS; r++) {
        uint64_t rg[6];
        uint32_t n = ranges_of(r, rg);
        for (uint32_t k = 0; k < n; k++)
            for (uint64_t seq = rg[2 * k]; seq < rg[2 * k + 1]; seq++) {
                ssize_t got = recv(s->rx, buf, sizeof buf, 0);
                struct l2f_frame_info fi;
                int v = got > 0 ? l2f_parse_frame(buf, (size_t)got, 0x88B5, &fi) : -1;
                uint64_t off = (seq - FIRST) * CHUNK;
                uint32_t want = seq + 1 == FIRST + NCHUNKS ? FILE_SIZE - off : CHUNK;
                if (v != L2F_V_OK || fi.seq != seq || fi.payload_len != want ||
                    memcmp(buf + fi.payload_off, data + off, want) != 0) {
                    fprintf(stderr, "bad frame: round %u seq %llu verdict %d got seq %llu\n", r,
                            (unsigned long long)seq, v, (unsigned long long)fi.seq);
                    s->bad++;
                    return NULL;
                }
                s->frames++;
            }
    }
    return NULL;
}

static void *sender(void *arg)
{
    struct side *s = arg;
    struct l2f_tx_template t;
    memset(&t, 0, sizeof t);
    memcpy(t.dst, "\x02\0\0\0\0\x02", 6);
    memcpy(t.src, "\x02\0\0\0\0\x01", 6);
    t.ethertype = 0x88B5;
    t.session = 7;
    t.mode = L2F_TX_CRC_HELPER;
    t.batch = 16;
    for (unsigned r = 0; r < ROUNDS; r++) {
        uint64_t rg[6];
        uint32_t n = ranges_of(r, rg);
        uint32_t k = 0;
        while (k < n) {
            /* At most 300 frames a call: calls also stop mid-window. */
            int64_t got = l2f_tx_ranges(s->tx, 0, &t, data, FILE_SIZE, FILE_SIZE, FIRST, CHUNK,
                                        rg + 2 * k, n - k, 300, &s->st);
            if (got < 0) { fprintf(stderr, "tx error %lld\n", (long long)got); exit(2); }
            /* Resume exactly after the frames taken. */
            while (got > 0 && k < n) {
                uint64_t left = rg[2 * k + 1] - rg[2 * k];
                if ((uint64_t)got >= left) { got -= (int64_t)left; k++; }
                else { rg[2 * k] += (uint64_t)got; got = 0; }
            }
            if (k < n) {
                struct pollfd p = {.fd = s->tx, .events = POLLOUT};
                poll(&p, 1, 10);
            }
        }
    }
    return NULL;
}

int main(void)
{
    for (uint32_t i = 0; i < FILE_SIZE; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 24);
    struct side sides[2];
    pthread_t th[4];
    for (int i = 0; i < 2; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0) { perror("socketpair"); return 1; }
        int small = 64 << 10; /* a small buffer: backpressure mid-window, often */
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        sides[i] = (struct side){.tx = sv[0], .rx = sv[1]};
        pthread_create(&th[2 * i], NULL, receiver, &sides[i]);
    }
    /* Two senders at once: one has the helper's window, the other builds its own. */
    pthread_create(&th[1], NULL, sender, &sides[0]);
    pthread_create(&th[3], NULL, sender, &sides[1]);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    printf("frames %ld %ld bad %d %d helper %llu %llu backpressure %llu\n",
           sides[0].frames, sides[1].frames, sides[0].bad, sides[1].bad,
           (unsigned long long)sides[0].st.helper_frames,
           (unsigned long long)sides[1].st.helper_frames,
           (unsigned long long)(sides[0].st.backpressure + sides[1].st.backpressure));
    return sides[0].bad || sides[1].bad;
}
"""


def build(tmp_path: Path, txpath: Path) -> Path:
    """Compile the harness with `txpath` (and the CRC and frame units) under TSan."""
    if CC is None:
        pytest.skip("gcc is not installed")
    src = tmp_path / "harness.c"
    src.write_text(HARNESS)
    exe = tmp_path / ("harness_" + txpath.stem)
    units = [txpath, CSRC / "frame.c", CSRC / "crc32c.c"]
    cmd = [CC, "-O1", "-g", "-fsanitize=thread", "-Wall", "-Wextra", f"-I{CSRC}", str(src)]
    done = subprocess.run(
        [*cmd, *map(str, units), "-o", str(exe), "-lpthread"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 and "tsan" in done.stderr.lower():
        pytest.skip(f"gcc has no ThreadSanitizer runtime (apt-get install libtsan2): {done.stderr}")
    assert done.returncode == 0, done.stderr
    return exe


def run(exe: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"TSAN_OPTIONS": "halt_on_error=0 exitcode=66"},
    )


def test_helper_thread_is_race_free_and_frames_exact(tmp_path: Path) -> None:
    done = run(build(tmp_path, CSRC / "txpath.c"))
    assert "ThreadSanitizer" not in done.stderr, done.stderr[-4000:]
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    m = re.search(r"frames (\d+) (\d+) bad 0 0 helper (\d+) (\d+) backpressure (\d+)", done.stdout)
    assert m, done.stdout
    frames_a, frames_b, helper_a, helper_b, backpressure = map(int, m.groups())
    assert frames_a == frames_b > 10000
    # The helper built a real share of the headers, and calls did stop on a full buffer.
    assert helper_a + helper_b > 0
    assert backpressure > 0


def test_harness_catches_a_missing_release(tmp_path: Path) -> None:
    source = (CSRC / "txpath.c").read_text()
    weak = source.replace(
        "atomic_store_explicit(&helper.w.ready[g], job_of(c), memory_order_release)",
        "atomic_store_explicit(&helper.w.ready[g], job_of(c), memory_order_relaxed)",
    )
    assert weak != source, "the helper's release store moved: update this test"
    mutant = tmp_path / "txpath_weak.c"
    mutant.write_text(weak)
    done = run(build(tmp_path, mutant))
    assert "WARNING: ThreadSanitizer: data race" in done.stderr
