"""cffi build script for the C core: API mode, out of line (STYLE.md §5).

setup.py names `csrc/build_ffi.py:ffibuilder` in `cffi_modules`, so `pip install .` and
`pip install -e .` compile `l2fast._core`.  Nothing here is hand-maintained per file:

- the cdef is the concatenation of the CDEF-BEGIN..CDEF-END blocks of every `csrc/*.h` (sorted by
  name), so a new header with such a block (e.g. csrc/relay.h) is picked up automatically;
- the module source includes every header that has a CDEF block;
- every `csrc/*.c` is compiled in, except fuzz targets (`fuzz*.c`), which need libFuzzer.

Run it directly (`python csrc/build_ffi.py`) for a quick compile check: it builds into
build/ffi-check/, not into the package, so it never shadows the installed module.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI  # type: ignore[import-untyped, unused-ignore]

CSRC = Path(__file__).resolve().parent
ROOT = CSRC.parent

_CDEF_RE = re.compile(r"/\*\s*CDEF-BEGIN\s*\*/(.*?)/\*\s*CDEF-END\s*\*/", re.DOTALL)

# -O2 -Wall -Wextra for every file, ours and cffi's generated one.  The extras are warnings our own
# code must also pass.  The generated module (l2fast/_core.c) is compiled with the same flags and
# is clean under them with cffi 1.16+ and gcc 12 / clang 14, so no -Wno-... is needed; if a future
# cffi trips one, silence only that warning here and say why.
EXTRA_COMPILE_ARGS = [
    "-O2",
    "-Wall",
    "-Wextra",
    "-Wformat=2",
    "-Wvla",
    "-fno-strict-aliasing",
]


def cdef_headers() -> list[Path]:
    """The csrc headers that export declarations to Python (they have a CDEF block), sorted."""
    return [h for h in sorted(CSRC.glob("*.h")) if _CDEF_RE.search(h.read_text())]


def cdef_text() -> str:
    """The cffi cdef: every CDEF block of every csrc header, in sorted header order."""
    parts = []
    for header in cdef_headers():
        for block in _CDEF_RE.findall(header.read_text()):
            parts.append(f"/* from {header.name} */\n{block}")
    if not parts:
        raise RuntimeError(f"no CDEF-BEGIN..CDEF-END block found in {CSRC}/*.h")
    return "\n".join(parts)


def c_sources() -> list[str]:
    """Every C source of the core, excluding fuzz targets, as paths setuptools accepts."""
    sources = [c for c in sorted(CSRC.glob("*.c")) if not c.name.startswith("fuzz")]
    # setuptools wants paths relative to setup.py's directory (the cwd during a build); fall back to
    # absolute paths when run from elsewhere.
    cwd = Path.cwd().resolve()
    if cwd == ROOT:
        return [os.path.relpath(c, ROOT) for c in sources]
    return [str(c) for c in sources]


ffibuilder = FFI()
ffibuilder.cdef(cdef_text())
ffibuilder.set_source(
    "l2fast._core",
    "".join(f'#include "{h.name}"\n' for h in cdef_headers()),
    sources=c_sources(),
    include_dirs=[os.path.relpath(CSRC, ROOT) if Path.cwd().resolve() == ROOT else str(CSRC)],
    extra_compile_args=EXTRA_COMPILE_ARGS,
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(ROOT / "build" / "ffi-check"), verbose=True)
