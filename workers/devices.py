"""Where a trial's tensors go and how many CPU threads it may use, from what Ray granted it.

torch is imported here only when a trial needs it: a trial whose code never imports torch (a
custom objective over scikit-learn, or a plain function) must not pay torch's import before its
first step: about 3 s of a fresh process on a 2-core machine at a load of 3, 21.6 s in a trial
process beside a busy benchmark (measured in the peer benchmark's trial processes,
benchmarks/README.md, "Peers").

What must stay true: a trial granted ``n`` CPUs runs torch with ``n`` intra-op threads, whether
torch was imported before the trial began or later by the trial's own code (torch reads
``OMP_NUM_THREADS`` when it is imported); a trial granted no GPU never imports torch here.
"""

from __future__ import annotations

import os
import sys

# What torch (and the BLAS libraries under it) read for their thread pools when first imported.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def trial_device(gpus_granted: float) -> str:
    """``cuda`` when the trial was granted a (share of a) GPU and CUDA is usable, else ``cpu``."""
    if gpus_granted <= 0:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def limit_threads(cpus: float) -> int:
    """Let torch use as many intra-op threads as CPUs granted (at least 1); return that number.

    Without this each trial starts one thread per core, and concurrent trials on a small
    machine spend their time fighting over cores. torch already imported is told now; otherwise
    the environment tells it when the trial's code imports it.
    """
    threads = max(1, int(cpus))
    for name in THREAD_VARS:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    return threads
