"""asyncssh, imported without its start-up library lookup.

At import, asyncssh looks for liboqs (post-quantum key exchange) and nettle (UMAC) with
``ctypes.util.find_library``, which on Linux runs ``ldconfig -p`` and, for a library it does not list (liboqs,
usually), ``gcc`` and ``ld`` as well: five to seven processes at every start of a graylift command that talks
SSH. Here that lookup reads the same directories the dynamic linker searches instead (no process); a library
installed in one of them is still found and used.

cryptography (from 51) warns at every use of its DSA names, which asyncssh makes at import and when it checks
a key's type: those warnings, and only those from asyncssh's own modules, are not shown (graylift offers and
accepts no DSA key).
"""

from __future__ import annotations

import contextlib
import ctypes.util
import glob
import os
import warnings
from collections.abc import Iterator

LINKER_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib", "/lib/x86_64-linux-gnu",
               "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu")


def linker_dirs() -> list[str]:
    """The dynamic linker's directories: the usual ones and those /etc/ld.so.conf.d names."""
    found = list(LINKER_DIRS)
    for conf in sorted(glob.glob("/etc/ld.so.conf.d/*.conf")):
        with contextlib.suppress(OSError), open(conf, encoding="utf-8") as f:
            found += [ln.strip() for ln in f if ln.strip().startswith("/")]
    return list(dict.fromkeys(d for d in found if os.path.isdir(d)))


def find_library(name: str) -> str | None:
    """``ctypes.util.find_library`` without a subprocess: the file name (``libnettle.so.8``) of ``lib<name>``
    in a linker directory, as ``ctypes.cdll.LoadLibrary`` takes it, or None."""
    stem = name if name.startswith("lib") else f"lib{name}"
    for directory in linker_dirs():
        versions = sorted(glob.glob(os.path.join(directory, f"{stem}.so.*")), key=len)
        if versions:
            return os.path.basename(versions[0])
        if os.path.exists(os.path.join(directory, f"{stem}.so")):
            return f"{stem}.so"
    return None


@contextlib.contextmanager
def quiet_library_lookup() -> Iterator[None]:
    original = ctypes.util.find_library
    ctypes.util.find_library = find_library
    try:
        yield
    finally:
        ctypes.util.find_library = original


warnings.filterwarnings("ignore", message="DSA is deprecated", category=UserWarning, module=r"asyncssh\.")
with quiet_library_lookup():
    import asyncssh

__all__ = ["asyncssh", "find_library", "quiet_library_lookup"]
