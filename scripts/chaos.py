"""Chaos test: kill training runs at random moments, resume them, and count what was lost.

    python scripts/chaos.py --trials 20

Each trial starts ``ppl-vae train`` on the bundled digits as a subprocess with a random
checkpoint interval (every epoch, or ``--checkpoint-every`` 1, 5 or 13 steps), sends it
SIGKILL, SIGTERM or SIGINT once it has finished a random step plus a random fraction of a
step's time (so signals land mid-step, mid-checkpoint and mid-evaluation), and runs
``ppl-vae train --resume`` until the run is complete (``--kills`` signals per trial). The
child process records each finished step in a heartbeat file, so after every kill the script
knows how far training really got. It reports

- lost steps beyond the checkpoint interval: steps finished minus the checkpoint's step,
  beyond what the signal allows (SIGKILL: the checkpoint interval; SIGTERM/SIGINT: none);
- corrupt checkpoints: a checkpoint that does not load after a kill;
- metric gaps: epochs missing or repeated in ``metrics.jsonl``;
- unexpected exit codes (SIGINT must end with 130, SIGTERM with 143, unless the run was
  already complete) and temporary files left in finished runs;

and compares every finished run's parameters and metrics with an uninterrupted reference
run (all processes run single-threaded, so the CPU arithmetic is the same). It exits with 1
if anything was lost, corrupt, missing or different.

    python scripts/chaos.py --trials 10 --nproc 2

runs every training as a 2-process data-parallel job (the variables torchrun sets, gloo on
127.0.0.1), and the signal goes to one rank chosen at random: SIGTERM/SIGINT must stop both
ranks after the same step with one checkpoint (143/130 from both), SIGKILL of one rank must end
the other with exit 4; every resume runs on 2 processes again and must end bit-identical to the
uninterrupted 2-process run (the checkpoint carries rank 1's random stream).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN = ["--epochs", "4", "--batch-size", "50", "--hidden", "32", "--latent-dim", "4", "--no-progress"]
STEPS_PER_EPOCH, EPOCHS = 1500 // 50, 4
INTERVALS = (None, 1, 5, 13)  # None: a checkpoint after every epoch only
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
EXIT = {signal.SIGKILL: -signal.SIGKILL, signal.SIGTERM: 143, signal.SIGINT: 130}
PEER_LOST = 4  # ppl_vae.parallel.PeerLost.exit_code


def child(heartbeat: str, argv: list[str]) -> int:
    """``ppl-vae argv``, appending each finished step's number to ``heartbeat``."""
    from ppl_vae.cli import main
    from ppl_vae.inference.trainer import Trainer

    fd = os.open(heartbeat, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    train_step = Trainer.train_step

    def beating(self, x, idx):
        loss = train_step(self, x, idx)
        os.write(fd, b"%d\n" % (self.step + 1))
        return loss

    Trainer.train_step = beating
    return main(argv)


def last_beat(heartbeat: Path) -> int:
    lines = heartbeat.read_text().split("\n")[:-1] if heartbeat.exists() else []  # a cut-off last line is dropped
    return int(lines[-1]) if lines else 0


NPROC = 1  # processes per training job (--nproc)


def launch(heartbeat: Path, argv: list[str], log: Path) -> list[subprocess.Popen]:
    """The job's processes, rank 0 first; rank 0 beats the heartbeat."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if NPROC > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(NPROC))
    with open(log, "a") as f:
        return [subprocess.Popen([sys.executable, __file__, "--child", str(heartbeat) if r == 0 else os.devnull,
                                  *argv], stdout=f, stderr=subprocess.STDOUT,
                                 env={**env, **({"RANK": str(r), "LOCAL_RANK": str(r)} if NPROC > 1 else {})})
                for r in range(NPROC)]


def wait_for_step(procs: list[subprocess.Popen], heartbeat: Path, step: int) -> bool:
    """Wait until training has finished ``step``; False if the job exited first."""
    while procs[0].poll() is None:
        if last_beat(heartbeat) >= step:
            return True
        time.sleep(0.002)
    return False


def wait_all(procs: list[subprocess.Popen], timeout=600) -> list[int]:
    return [p.wait(timeout=timeout) for p in procs]


def run_to_end(run: Path, heartbeat: Path, log: Path) -> tuple[int, float]:
    """Train without interruption; exit code and seconds from the first step to the last."""
    procs = launch(heartbeat, ["train", "--out", str(run), *TRAIN], log)
    wait_for_step(procs, heartbeat, 1)
    start = time.time()
    return max(map(abs, wait_all(procs))), os.path.getmtime(heartbeat) - start


def final_state(run: Path):
    from ppl_vae.io import checkpoint
    from ppl_vae.io.rundir import read_jsonl

    params = checkpoint.load(run / "checkpoint.pt")["params"]
    metrics = [{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(run / "metrics.jsonl")]
    return params, metrics


def gaps(rows: list[dict], epochs: int) -> int:
    """Epochs 1..epochs missing from ``rows``, plus rows repeated."""
    seen = [r.get("epoch") for r in rows]
    return len(set(range(1, epochs + 1)) - set(seen)) + len(seen) - len(set(seen))


def trial(number: int, rng: random.Random, folder: Path, step_seconds: float, kills: int) -> dict:
    """Train, signalling the run ``kills`` times, each at a random step plus a random fraction of a step."""
    from ppl_vae.io import checkpoint
    from ppl_vae.errors import UsageError
    from ppl_vae.io.rundir import read_jsonl

    run, heartbeat, log = folder / "run", folder / "heartbeat", folder / "log.txt"
    interval = rng.choice(INTERVALS)
    argv = [*TRAIN, *(["--checkpoint-every", str(interval)] if interval else [])]
    result = dict(trial=number, interval=interval or "epoch", events=[], lost=0, corrupt=0, gaps=0, odd_exits=0,
                  temporary=0)
    resume = False
    for attempt in range(kills + 1):
        procs = launch(heartbeat, ["train", "--resume" if resume else "--out", str(run), *argv], log)
        resume = True
        first, last = last_beat(heartbeat) + 1, EPOCHS * STEPS_PER_EPOCH
        if attempt == kills or first > last or not wait_for_step(procs, heartbeat, rng.randint(first, last)):
            if any(wait_all(procs)):
                raise SystemExit(f"trial {number}: training failed; see {log}")
            break
        sig, victim = rng.choice(SIGNALS), rng.randrange(NPROC)
        time.sleep(rng.uniform(0, step_seconds))  # mid-step, mid-checkpoint or mid-evaluation
        procs[victim].send_signal(sig)
        codes = wait_all(procs)
        # SIGKILL of one rank of several: the others stop with exit 4 (a peer lost) at their next collective
        expected = [EXIT[sig] if r == victim or sig != signal.SIGKILL else PEER_LOST for r in range(NPROC)]
        beat = last_beat(heartbeat)
        try:
            state = checkpoint.load(run / "checkpoint.pt")
        except UsageError as e:
            result["corrupt"] += 1
            result["events"].append(f"{sig.name} at step {beat}: {e}")
            result["final"] = None
            return result
        done = state["epoch"] == EPOCHS
        allowed = (interval or STEPS_PER_EPOCH) if sig == signal.SIGKILL else 0
        lost = beat - state["step"]
        result["lost"] += max(0, lost - allowed)
        result["gaps"] += gaps([r for r in read_jsonl(run / "metrics.jsonl") if r["epoch"] <= state["epoch"]],
                               state["epoch"])
        result["odd_exits"] += codes != expected and not (done and all(c in (0, e) for c, e in zip(codes, expected)))
        to = f" to rank {victim}" if NPROC > 1 else ""
        result["events"].append(f"{sig.name}{to} at step {beat}: exit {'/'.join(map(str, codes))}, checkpoint at "
                                f"step {state['step']}"
                                + (" (run already complete)" if done else f", {lost} lost (≤ {allowed} allowed)"))
        if done:
            break
    result["gaps"] += gaps(read_jsonl(run / "metrics.jsonl"), EPOCHS)
    result["temporary"] = len(list(run.glob("*.tmp")))
    result["final"] = final_state(run)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--kills", type=int, default=1, help="signals per trial (each followed by --resume)")
    p.add_argument("--seed", type=int, default=0, help="seeds the kill moments, signals and intervals")
    p.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder, removed)")
    p.add_argument("--nproc", type=int, default=1, choices=(1, 2), help="processes per training job (data-parallel)")
    args = p.parse_args()
    global NPROC
    NPROC = args.nproc
    import torch

    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        code, duration = run_to_end(work / "reference" / "run", work / "reference.heartbeat",
                                    work / "reference.log")
        if code != 0:
            raise SystemExit(f"the reference run failed; see {work / 'reference.log'}")
        ref_params, ref_metrics = final_state(work / "reference" / "run")
        job = f" on {NPROC} processes" if NPROC > 1 else ""
        print(f"chaos: {args.trials} trials of `ppl-vae train {' '.join(TRAIN)}`{job} ({STEPS_PER_EPOCH} steps per "
              f"epoch, {EPOCHS * STEPS_PER_EPOCH} in all; the reference run trains in {duration:.1f} s), "
              f"{args.kills} signal(s) per trial at a random step", flush=True)
        results = []
        for number in range(1, args.trials + 1):
            folder = work / f"trial-{number:02d}"
            folder.mkdir()
            result = trial(number, rng, folder, duration / (EPOCHS * STEPS_PER_EPOCH), args.kills)
            params, metrics = result.pop("final") or ({}, [])
            result["same_params"] = params.keys() == ref_params.keys() and all(
                torch.equal(params[k], ref_params[k]) for k in params)
            result["same_metrics"] = metrics == ref_metrics
            results.append(result)
            print(f"  trial {number:2d}, checkpoint every {result['interval']}: {'; '.join(result['events'])}; "
                  f"parameters {'identical' if result['same_params'] else 'DIFFERENT'}, "
                  f"metrics {'identical' if result['same_metrics'] else 'DIFFERENT'}", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    total = {key: sum(r[key] for r in results) for key in ("lost", "corrupt", "gaps", "odd_exits", "temporary")}
    sent = [e.split()[0] for r in results for e in r["events"]]
    same = sum(r["same_params"] and r["same_metrics"] for r in results)
    print(f"signals sent: {', '.join(f'{sent.count(s.name)} {s.name}' for s in SIGNALS)}")
    print(f"lost steps beyond the checkpoint interval: {total['lost']}")
    print(f"corrupt checkpoints: {total['corrupt']}")
    print(f"metric gaps: {total['gaps']}")
    print(f"unexpected exit codes: {total['odd_exits']}")
    print(f"temporary files left in finished runs: {total['temporary']}")
    print(f"final parameters and metrics identical to the uninterrupted run: {same}/{len(results)}")
    return 0 if same == len(results) and not any(total.values()) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child(sys.argv[2], sys.argv[3:]))
    sys.exit(main())
