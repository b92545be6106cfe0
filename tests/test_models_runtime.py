"""tcmalloc re-exec helper: preloads the allocator once, honours the opt-out, never loops."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import cli_env
from ftscale.models.runtime import TCMALLOC_PATH

PROBE = (
    "import os; from ftscale.models.runtime import maybe_reexec_with_tcmalloc, tcmalloc_loaded; "
    "maybe_reexec_with_tcmalloc(); print(tcmalloc_loaded(), os.environ.get('FTSCALE_TCMALLOC_REEXEC'))"
)


def probe(**env_overrides: str) -> str:
    env = {**cli_env(), **env_overrides}
    env.pop("LD_PRELOAD", None)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


@pytest.mark.skipif(not TCMALLOC_PATH.is_file(), reason="libtcmalloc_minimal not installed")
def test_reexec_preloads_tcmalloc_once():
    assert probe() == "True 1"


def test_opt_out_keeps_the_default_allocator():
    assert probe(FTSCALE_TCMALLOC="0") == "False None"
