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


def test_one_device_resolver_for_every_setting() -> None:
    import torch

    from ftscale.errors import UserError
    from ftscale.models.runtime import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match=r"pretrain.device='tpu' is not a device"):
        resolve_device("tpu", setting="pretrain.device")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"^execution.device='cuda:1' but no CUDA GPU is visible"):
            resolve_device("cuda:1", setting="execution.device")
