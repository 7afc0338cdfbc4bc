"""Runs that share cores: --threads sets torch's CPU threads for one command."""

import torch

from helpers import run_cli


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
