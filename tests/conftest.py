"""Test-session settings.

The tests train tiny networks on tiny images: one intra-op thread is faster than two there
(no thread hand-offs), and it keeps OpenMP workers from spinning against the subprocesses
that some tests start (kill -9, SIGTERM, torchrun). Subprocesses inherit the variable.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
