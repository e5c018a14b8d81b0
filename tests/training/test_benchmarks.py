"""The speed benchmarks run, and their JSON lines say what the README reads from them.

Only tiny, short configurations: these check the scripts, not the speed (speed is
never asserted in a unit test).
"""

import json
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

bench_train_step = pytest.importorskip("bench_train_step")
profile_step = pytest.importorskip("profile_step")
pytest.importorskip("threadpoolctl")


def _lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_bench_train_step_lines(capsys):
    assert bench_train_step.main(["--batch-size", "4", "200", "--seconds", "0.05",
                                  "--rounds", "1", "--machine"]) == 0
    machine, *rows = _lines(capsys)
    assert machine["machine"]["logical_cpus"] >= 1
    assert [r["batch_size"] for r in rows] == [4, 200]
    for r in rows:
        assert r["samples_per_second"] == pytest.approx(r["batch_size"] / (r["step_ms"] / 1e3))
        assert r["gemm_fraction"] == pytest.approx(r["gemm_ms"] / r["step_ms"])
        assert r["peak_rss_mib"] > 0 and "ratio_vs_torch" not in r
    # the step train_vae runs: split into row blocks from SPLIT_BATCH_MIN rows on 2+ threads
    from minivae.training.train import SPLIT_BATCH_MIN
    assert [r["split_batch"] for r in rows] == [False, 200 >= SPLIT_BATCH_MIN]


def test_bench_train_step_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        bench_train_step.main(["--batch-size", "0"])


def test_profile_step_parts_add_up(capsys):
    assert profile_step.main(["--batch-size", "8", "200", "--steps", "3"]) == 0
    rows = _lines(capsys)
    assert [r["batch_size"] for r in rows] == [8, 200]
    parts = ("dense_forward", "dense_backward", "activations", "loss_forward", "loss_backward")
    for r in rows:
        assert all(r[p] > 0 for p in parts + ("forward_backward", "adam", "gemm", "step"))
        assert r["vae_rest"] == pytest.approx(r["forward_backward"] - sum(r[p] for p in parts),
                                              abs=0.01)
        assert r["other"] == pytest.approx(r["step"] - r["gemm"], abs=0.01)
    # batch 8 runs serially (gemm_block is gemm); 200 in two blocks of 100 rows
    assert not rows[0]["split_batch"] and rows[0]["gemm_block"] == rows[0]["gemm"]
    assert rows[1]["split_batch"] and 0 < rows[1]["gemm_block"]
    # the timers are removed again: the classes hold their own methods
    from minivae import layers
    assert layers.Dense.__dict__["forward"].__qualname__ == "Dense.forward"


def test_compare_peers_runs_each_peer_in_its_own_process_and_names_the_machine(tmp_path, capsys):
    """minivae alone here (PyTorch and JAX are optional: absent, they are left out and said so)."""
    compare_peers = pytest.importorskip("compare_peers")
    out = tmp_path / "peers.json"
    assert compare_peers.main(["--batch-size", "16", "--hidden", "32", "--rounds", "2",
                               "--seconds", "0.05", "--peers", "minivae", "torch",
                               "--peers-python", sys.executable, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["machine"]["cpu"] and result["machine"]["logical_cpus"] >= 1
    mine = [r for r in result["runs"] if r["peer"] == "minivae"]
    assert [r["round"] for r in mine] == [0, 1] and all(r["blas_kernel"] for r in mine)
    for r in mine:             # batch 16 runs serially, Adam on one thread: no hand-off
        assert not r["split_batch"] and r["handoffs"] == 0
        assert r["bound_ms"] == pytest.approx(r["block_alone_ms"] + r["adam_ms"])
    cell = result["summary"][0]
    assert cell["batch_size"] == 16 and cell["hidden"] == 32 and cell["minivae"] > 0
    try:
        import torch  # noqa: F401
        assert cell["ratio_vs_torch"] == pytest.approx(cell["minivae"] / cell["torch"])
    except ImportError:
        assert "torch" in result["left_out"] and "torch" not in cell
        assert "note: torch left out" in capsys.readouterr().err


def test_compare_peers_sets_minivaes_least_times_beside_each_peer_round_by_round(tmp_path):
    """The floor (one row block's products on one BLAS thread + Adam alone) and the bound (one
    row block's forward + backward alone + Adam alone + the hand-offs) against a peer's step
    of the same round; the peer here is a stand-in that reports a fixed speed."""
    compare_peers = pytest.importorskip("compare_peers")
    fake = tmp_path / "fake_peer_python"
    fake.write_text("#!/bin/sh\necho '{\"batch_size\": 200, \"hidden\": 32, "
                    "\"samples_per_second\": 1000.0, \"version\": \"0\"}'\n")
    fake.chmod(0o755)
    out = tmp_path / "peers.json"
    assert compare_peers.main(["--batch-size", "200", "--hidden", "32", "--rounds", "2",
                               "--seconds", "0.05", "--peers", "minivae", "jax",
                               "--peers-python", str(fake), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    mine = [r for r in result["runs"] if r["peer"] == "minivae"]
    for r in mine:             # batch 200 on 2 threads: two blocks of 100 rows
        assert r["split_batch"] and r["gemm_block_ms"] > 0 and r["adam_ms"] > 0
        assert r["floor_ms"] == pytest.approx(r["gemm_block_ms"] + r["adam_ms"])
        assert r["floor_samples_per_second"] == pytest.approx(200 / (r["floor_ms"] / 1e3))
        # the split step's pool thread and Adam's second thread: two hand-offs per step
        assert r["handoffs"] == 2 and r["handoff_ms"] > 0
        assert r["block_alone_ms"] > r["gemm_block_ms"]        # the products and the rest
        assert r["bound_ms"] == pytest.approx(r["block_alone_ms"] + r["adam_ms"]
                                              + 2 * r["handoff_ms"])
        assert r["bound_samples_per_second"] == pytest.approx(200 / (r["bound_ms"] / 1e3))
    cell = result["summary"][0]
    for kind in ("floor", "bound"):
        least = sorted(r[f"{kind}_samples_per_second"] / 1000.0 for r in mine)
        assert cell[f"minivae_{kind}"] == pytest.approx(sum(least) * 1000.0 / 2)
        assert cell[f"{kind}_ratio_vs_jax"] == pytest.approx(sum(least) / 2)  # median of two
        assert cell[f"{kind}_ratio_vs_jax_range"] == pytest.approx(least)
    assert cell["ratio_vs_jax"] == pytest.approx(cell["minivae"] / 1000.0)


def test_compare_peers_runs_a_checkout_before_a_change_in_the_same_rounds(tmp_path):
    """--before runs minivae from another checkout (here this one) as minivae_before."""
    compare_peers = pytest.importorskip("compare_peers")
    root = Path(compare_peers.__file__).resolve().parent.parent
    out = tmp_path / "peers.json"
    assert compare_peers.main(["--batch-size", "16", "--hidden", "32", "--rounds", "2",
                               "--seconds", "0.05", "--peers", "minivae", "--before", str(root),
                               "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [(r["peer"], r["round"]) for r in result["runs"]] == [
        ("minivae", 0), ("minivae_before", 0), ("minivae", 1), ("minivae_before", 1)]
    cell = result["summary"][0]
    assert cell["ratio_vs_before"] == pytest.approx(cell["minivae"] / cell["minivae_before"])
    low, high = cell["ratio_vs_before_range"]
    assert 0 < low <= high
    with pytest.raises(SystemExit):                    # not a checkout: refused before any run
        compare_peers.main(["--peers", "minivae", "--before", str(tmp_path)])


def test_split_overhead_times_every_variant(capsys):
    split_overhead = pytest.importorskip("split_overhead")
    assert split_overhead.main(["--batch-size", "8", "--steps", "3"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ("one_half_alone", "both_halves_synced", "both_free_running", "handoff_hot",
              "handoff_after_idle", "half_inside_synced", "start_lag", "end_wait"):
        assert row[k] > 0, k
    assert row["batch_size"] == 8 and row["blas_kernel"]
    with pytest.raises(SystemExit):                    # a batch that has no two halves
        split_overhead.main(["--batch-size", "1", "--steps", "3"])


@pytest.mark.skipif((os.cpu_count() or 1) < 2,
                    reason="the default run splits its batches on 2 cores or more")
def test_blas_spin_measures_both_ways_and_restores_the_hold():
    blas_spin = pytest.importorskip("blas_spin")
    from minivae.training.parallel import SplitBatchStep

    hold = SplitBatchStep.one_blas_thread
    for variant in blas_spin.STEP_VARIANTS:
        assert blas_spin.steps_after(variant, repeats=1, n_steps=2) > 0
    held, free = (blas_spin.fit_time(v, epochs=1) for v in ("held", "not_held"))
    assert SplitBatchStep.one_blas_thread is hold            # the class is left as it was
    # holding BLAS at one thread changes the time, never a number
    assert held["last_test_neg_elbo"] == free["last_test_neg_elbo"]
    assert held["fit_seconds"] > 0 and free["fit_seconds"] > 0
    from minivae.training import train
    given = train.optimizer_for
    one, two = (blas_spin.ae_fit_time(v, epochs=1) for v in blas_spin.ADAM_VARIANTS)
    assert train.optimizer_for is given                     # the trainer is left as it was
    assert one["last_test_sse"] == two["last_test_sse"]     # Adam's threads change no number
    with pytest.raises(SystemExit):
        blas_spin.main(["--rounds", "0"])


def test_peer_step_leaves_the_bound_out_for_a_tree_without_the_split_protocol(monkeypatch):
    """compare_peers --before may run a checkout older than for_training: no bound, no crash."""
    peer_step = pytest.importorskip("peer_step")
    from minivae import layers
    from minivae.backend import get_backend

    be = get_backend("numpy", seed=0)
    step = peer_step.block_step(be, 4, 8)
    step()                                                   # runs as the split step's block
    monkeypatch.delattr(layers.Module, "for_training")
    assert peer_step.block_step(be, 4, 8) is None
