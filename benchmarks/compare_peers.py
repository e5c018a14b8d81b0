#!/usr/bin/env python
"""minivae against PyTorch and JAX as a user compares them: each in a process of its own.

    python benchmarks/compare_peers.py --batch-size 128 1024 --rounds 5 \\
        --json benchmarks/results/peers.json
    python benchmarks/compare_peers.py --peers-python /path/to/python-with-torch-and-jax ...
    python benchmarks/compare_peers.py --before /tmp/minivae-before ...   # a change, before/after

Every (round, configuration, peer) is one run of ``peer_step.py`` in a fresh process; the
rounds alternate the peers (A, B, C, A, B, C, …) so that all see the same machine state, and
each figure is the median over the rounds.  PyTorch (eager) and JAX (jit) are optional: a
peer whose import fails is left out, and said so.  minivae runs with the OpenBLAS kernel
NumPy picks for this CPU, as a user's would: the workplace's ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` are removed from its process's environment (``--keep-openblas-env``
keeps them), and the kernel that ran is recorded.  The JSON names the CPU, the core count and
every peer's version beside every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: minivae's least step times that peer_step.py reports (see its docstring), each set
#: against every peer's step of the same round: the floor (the matrix products of one row
#: block + Adam alone) and the bound (one row block's whole forward + backward alone + Adam
#: alone + the hand-offs to pool threads).
LEAST_TIMES = ("floor", "bound")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    import platform
    return platform.processor() or "unknown"


def commit_of(checkout) -> str | None:
    """The short commit a checkout is at, or None (not a git checkout, or no git)."""
    try:
        done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def run_peer(python, peer, batch, hidden, threads, seconds, keep_env, tree=None) -> dict | None:
    """One run of peer_step.py; ``tree``: a checkout whose minivae runs (on PYTHONPATH)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    if peer == "minivae" and not keep_env:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    cmd = [python, str(HERE / "peer_step.py"), "--peer", peer, "--batch-size", str(batch),
           "--hidden", str(hidden), "--threads", str(threads), "--seconds", str(seconds)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(HERE),
                          timeout=600)
    if done.returncode != 0:
        return {"peer": peer, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--hidden", type=int, nargs="+", default=[400])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--peers", nargs="+", default=["minivae", "torch", "jax"],
                   choices=("minivae", "torch", "jax"))
    p.add_argument("--peers-python", default=sys.executable,
                   help="the Python that runs PyTorch and JAX (minivae runs in this one)")
    p.add_argument("--keep-openblas-env", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--before", default=None, metavar="CHECKOUT",
                   help="also run minivae from this checkout (say, a git worktree of the commit "
                        "before a change), as the peer minivae_before, in the same rounds")
    args = p.parse_args(argv)
    if args.before and not (Path(args.before) / "minivae" / "__init__.py").is_file():
        p.error(f"--before {args.before}: not a checkout of minivae (no minivae/__init__.py)")
    peers = list(args.peers) + (["minivae_before"] if args.before else [])

    runs, missing = [], {}
    for r in range(args.rounds):
        for hidden in args.hidden:
            for batch in args.batch_size:
                for peer in peers:
                    if peer in missing:
                        continue
                    mine = peer.startswith("minivae")
                    python = sys.executable if mine else args.peers_python
                    row = run_peer(python, "minivae" if mine else peer, batch, hidden,
                                   args.threads, args.seconds, args.keep_openblas_env,
                                   tree=args.before if peer == "minivae_before" else None)
                    if "error" in row:
                        missing[peer] = row["error"]
                        print(f"note: {peer} left out: {row['error']}", file=sys.stderr)
                        continue
                    runs.append({**row, "peer": peer, "round": r})
                    print(json.dumps(runs[-1]), flush=True)

    summary = []
    for hidden in args.hidden:
        for batch in args.batch_size:
            cell = {"batch_size": batch, "hidden": hidden}
            for peer in peers:
                v = [x["samples_per_second"] for x in runs
                     if x["peer"] == peer and x["batch_size"] == batch and x["hidden"] == hidden]
                if v:
                    cell[peer] = statistics.median(v)
                    cell[f"{peer}_range"] = [min(v), max(v)]
            mv = [x for x in runs if x["peer"] == "minivae" and x["batch_size"] == batch
                  and x["hidden"] == hidden]
            if mv:
                cell["minivae_gemm_fraction"] = statistics.median(x["gemm_fraction"] for x in mv)
                cell["minivae_blas_kernel"] = mv[0]["blas_kernel"]
                for kind in LEAST_TIMES:                  # (absent from older peer_step.py)
                    if all(f"{kind}_samples_per_second" in x for x in mv):
                        cell[f"minivae_{kind}"] = statistics.median(
                            x[f"{kind}_samples_per_second"] for x in mv)
            for peer in ("torch", "jax"):
                if peer in cell and "minivae" in cell:
                    cell[f"ratio_vs_{peer}"] = cell["minivae"] / cell[peer]
                theirs = {x["round"]: x["samples_per_second"] for x in runs
                          if x["peer"] == peer and x["batch_size"] == batch
                          and x["hidden"] == hidden}
                for kind in LEAST_TIMES:
                    if theirs and f"minivae_{kind}" in cell:
                        # a ratio no step of this design could pass: its least time against
                        # the peer's step of the same round
                        per_round = [x[f"{kind}_samples_per_second"] / theirs[x["round"]]
                                     for x in mv if x["round"] in theirs]
                        cell[f"{kind}_ratio_vs_{peer}"] = statistics.median(per_round)
                        cell[f"{kind}_ratio_vs_{peer}_range"] = [min(per_round), max(per_round)]
            if "minivae_before" in cell and "minivae" in cell:
                cell["ratio_vs_before"] = cell["minivae"] / cell["minivae_before"]
                # per round, the two trees' runs minutes apart: the spread of the change
                pairs = {}
                for x in runs:
                    if x["peer"].startswith("minivae") and x["batch_size"] == batch \
                            and x["hidden"] == hidden:
                        pairs.setdefault(x["round"], {})[x["peer"]] = x["samples_per_second"]
                per_round = [p["minivae"] / p["minivae_before"] for p in pairs.values()
                             if len(p) == 2]
                cell["ratio_vs_before_range"] = [min(per_round), max(per_round)]
            summary.append(cell)
    versions = {x["peer"]: x.get("version") for x in runs if not x["peer"].startswith("minivae")}
    result = {"machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                          "threads": args.threads, "peer_versions": versions,
                          "openblas_env_removed_for_minivae": not args.keep_openblas_env},
              "minivae_commit": commit_of(HERE.parent),
              "minivae_before_commit": commit_of(args.before) if args.before else None,
              "rounds": args.rounds, "seconds": args.seconds, "left_out": missing,
              "summary": summary, "runs": runs}
    print(json.dumps({"summary": summary}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
