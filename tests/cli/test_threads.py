"""Runs that share cores: OpenMP's waiting threads sleep (OMP_WAIT_POLICY=PASSIVE unless set), and
--threads sets torch's CPU threads for one command."""

import os
import subprocess
import sys

import torch

from helpers import run_cli


def test_importing_ppl_vae_makes_openmp_threads_wait_passively_unless_told_otherwise():
    code = "import os, ppl_vae; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "PASSIVE"
    assert subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                          capture_output=True, text=True, check=True).stdout.strip() == "ACTIVE"


def test_threads_sets_torchs_cpu_threads_for_the_command(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # not 1 already, whatever this machine's cores
        code, _, err = run_cli(["train", "--out", tmp_path / "run", "--epochs", "1", "--hidden", "16",
                                "--threads", "1", "--no-progress"], capsys)
        assert code == 0, err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
