"""Wall time of N `ppl-vae train` runs started at once, against one run alone, on this machine.

People run experiments side by side; a run must degrade gracefully when others share its
cores. Each round starts N copies of the same command at once (each into its own run
directory) and waits for all; the median over rounds of the slowest copy's wall time is
compared with one copy alone. Ideal on C cores: max(1, N / C).

    python scripts/bench_concurrent.py --runs 1,2,4 --rounds 3
    python scripts/bench_concurrent.py --env OMP_NUM_THREADS=1      # with an environment setting
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="1,2,4", help="comma-separated numbers of concurrent runs")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set for every run")
    p.add_argument("--extra", default="", help="more options for ppl-vae train, e.g. '--threads 1'")
    p.add_argument("--json", default=None, help="also write the results to this file")
    return p.parse_args()


def wall_time(n: int, args, env) -> float:
    """Seconds until the last of n concurrent runs finished."""
    tmp = tempfile.mkdtemp(prefix="bench_concurrent_")
    try:
        command = [sys.executable, "-m", "ppl_vae", "train", "--epochs", str(args.epochs), "--no-progress",
                   *args.extra.split()]
        start = time.perf_counter()
        procs = [subprocess.Popen([*command, "--out", os.path.join(tmp, str(i))], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(n)]
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"a run failed: {err.decode()[-500:]}")
        return time.perf_counter() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    args = parse_args()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    counts = [int(n) for n in args.runs.split(",")]
    times = {n: [] for n in counts}
    for _ in range(args.rounds):  # interleaved, so drift in the machine's speed hits every count alike
        for n in counts:
            times[n].append(wall_time(n, args, env))
    median = {n: statistics.median(t) for n, t in times.items()}
    cores = len(os.sched_getaffinity(0))
    setting = " ".join(args.env + ([args.extra] if args.extra else [])) or "defaults"
    print(f"ppl-vae train --epochs {args.epochs} (digits), {cores} cores, {setting}; median of {args.rounds} rounds")
    print(f"{'runs':<6}{'wall s':>8}{'× one':>8}{'ideal':>8}")
    for n in counts:
        print(f"{n:<6}{median[n]:>8.1f}{median[n] / median[counts[0]]:>8.2f}{max(1.0, n / cores):>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cores": cores, "setting": setting, "epochs": args.epochs, "median_s": median,
                       "rounds_s": times}, f, indent=2)


if __name__ == "__main__":
    main()
