"""Where a trial's tensors go and how many CPU threads it may use, from what Ray granted it."""

from __future__ import annotations

import torch


def trial_device(gpus_granted: float) -> str:
    """``cuda`` when the trial was granted a (share of a) GPU and CUDA is usable, else ``cpu``."""
    return "cuda" if gpus_granted > 0 and torch.cuda.is_available() else "cpu"


def limit_threads(cpus: float) -> int:
    """Let torch use as many intra-op threads as CPUs granted (at least 1); return that number.

    Without this each trial starts one thread per core, and concurrent trials on a small
    machine spend their time fighting over cores.
    """
    threads = max(1, int(cpus))
    torch.set_num_threads(threads)
    return threads
