"""The reproduction scripts run end to end at a tiny scale on the bundled digits, and resume after SIGTERM."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_burda2016_resumes_after_sigterm_and_writes_its_table(tmp_path):
    argv = [sys.executable, str(ROOT / "scripts" / "reproduce" / "burda2016.py"), "--dataset", "digits", "--scale", "0",
            "--rows", "vae-1layer-k1,iwae-1layer-k5", "--eval-particles", "20", "--eval-points", "40",
            "--workdir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "runs" / "vae-1layer-k1" / "metrics.jsonl"
    while not metrics.exists() and first.poll() is None:
        time.sleep(0.01)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 143 and "run the same command again" in err, err
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "out" / "table.csv")))
    assert [(r["method"], r["k"]) for r in rows] == [("vae", "1"), ("iwae", "1"), ("iwae", "5")]
    assert rows[0]["nll"] == rows[1]["nll"]  # IWAE at k = 1 is the VAE's run
    assert all(r["epochs"] == "8" and r["eval_points"] == "40" and r["paper_nll"] == "" for r in rows)
    assert (tmp_path / "out" / "nll.png").stat().st_size > 0 and "| IWAE | 1 | 5 |" in done.stdout
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)  # all kept: nothing reruns
    assert again.returncode == 0 and "ppl-vae" not in again.stderr and "epoch 8/8" not in again.stderr
