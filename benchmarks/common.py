"""Pieces every benchmark script shares: the machine record and the JSON-lines writer."""

from __future__ import annotations

import json
import os
import platform

import numpy as np


def machine() -> dict:
    """Where the numbers come from: CPU, Python, NumPy, the BLAS and its threads."""
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform(),
            **{k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                               "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else None
        info["logical_cpus"] = len(names)
    except OSError:
        info["logical_cpus"] = os.cpu_count()
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "architecture",
                                               "num_threads")}
                        for p in threadpool_info()]
    except ImportError:
        pass
    return info


def blas_kernel() -> str | None:
    """The kernel family OpenBLAS runs (``Haswell``, ``SkylakeX``, …), or None without it.

    OpenBLAS picks it from the CPU unless ``OPENBLAS_CORETYPE`` forces one, and
    on the same machine the two can differ by more than 1.5× in GEMM speed, so
    every result line carries it.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return next((p.get("architecture") for p in threadpool_info()
                 if p.get("internal_api") == "openblas"), None)


def write_jsonl(path, lines) -> None:
    """Write one JSON object per line (creating the folder)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
