"""Process-level runtime settings: tcmalloc via re-exec, torch thread counts, and the one device resolver."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ftscale.errors import UserError

if TYPE_CHECKING:
    import torch

TCMALLOC_PATH = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
_GUARD_ENV = "FTSCALE_TCMALLOC_REEXEC"


def tcmalloc_loaded() -> bool:
    """Whether a tcmalloc library is mapped into this process."""
    try:
        return "tcmalloc" in Path("/proc/self/maps").read_text()
    except OSError:
        return "tcmalloc" in os.environ.get("LD_PRELOAD", "")


def maybe_reexec_with_tcmalloc(library: Path = TCMALLOC_PATH) -> bool:
    """Re-exec the current process with tcmalloc preloaded (+10–40 % CPU training speed, less noise).

    Does nothing (returns False) when the library is absent, already loaded, disabled with
    ``FTSCALE_TCMALLOC=0``, or when this process is already the re-executed one (the guard variable stops
    loops). On success it never returns: the process image is replaced with the same argv.
    """
    if os.environ.get("FTSCALE_TCMALLOC", "1") == "0" or os.environ.get(_GUARD_ENV):
        return False
    if not library.is_file() or tcmalloc_loaded():
        return False
    env = dict(os.environ)
    env[_GUARD_ENV] = "1"
    env["LD_PRELOAD"] = ":".join(filter(None, [str(library), env.get("LD_PRELOAD", "")]))
    argv = [sys.executable, *_original_argv()]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return True  # unreachable


def _original_argv() -> list[str]:
    """The interpreter arguments that started this process (keeps ``-m module`` intact)."""
    try:
        raw = Path("/proc/self/cmdline").read_bytes().split(b"\0")
        args = [a.decode() for a in raw if a]
        return args[1:]
    except OSError:
        return list(sys.argv)


def resolve_device(device: str, setting: str = "device") -> torch.device:
    """The torch device for a config value: ``auto`` is CUDA when a GPU is visible, else the CPU; ``cuda`` or
    ``cuda:N`` without a visible GPU is a one-line error naming ``setting`` (the config field it came from)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{setting}={device!r} but no CUDA GPU is visible; use 'cpu' or 'auto'")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(
            f"{setting}={device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None


def configure_threads(n_threads: int | None = None) -> int:
    """Use every core for intra-op work (small models gain nothing from inter-op threads)."""
    import torch

    n = n_threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n
