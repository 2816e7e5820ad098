"""Device, precision and seeding: one place that turns ``perf``/``run`` config into torch state."""

from __future__ import annotations

import contextlib
import os
import random
import threading
from pathlib import Path

import numpy as np
import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from sci2i.config.loader import ConfigError  # printed without a traceback, exit 2

        raise ConfigError(f"device {name} was asked for but no CUDA device is available here; use "
                          f"cpu (perf.device=cpu, --device cpu) or auto")
    return dev


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``perf.amp`` on ``device``; None means plain fp32."""
    if amp == "off" or device.type != "cuda":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict:
    """All RNG states, as plain tensors/containers (loadable with weights_only=True)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.frombuffer(np.random.get_state()[1].tobytes(), dtype=np.uint8).copy()),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": repr(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    keys = np.frombuffer(state["numpy"].numpy().tobytes(), dtype=np.uint32)
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), 0, 0.0))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: what a cluster job was given)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def loader_workers(requested: int) -> int:
    """``data.num_workers`` capped by the cores available to this process's share of the machine.

    Each of the ``LOCAL_WORLD_SIZE`` processes torchrun starts on a machine gets its part of the
    cores; asking for more workers than cores only makes them compete (and PyTorch warns about
    it on every loader). The worker count never changes what a loader yields (sci2i.data.build).
    """
    if requested <= 0:
        return 0
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(requested, available_cores() // local))


class PeakMemory:
    """Peak resident memory (GB) of this process while the ``with`` block runs, and the GPU's peak
    allocation when CUDA is in use (``.peak`` after the block).

    The resident size is sampled every ``interval`` seconds by a thread (from /proc/self/status on
    Linux; elsewhere the process's ``ru_maxrss``, a peak since start). Sampling, rather than
    resetting the kernel's high-water mark, leaves what ``/usr/bin/time`` or a scheduler reports
    of the process intact. DataLoader workers are processes of their own and not counted.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._rss = 0.0

    @staticmethod
    def _resident_gb() -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20  # kB
        except OSError:
            pass
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._rss = max(self._rss, self._resident_gb())

    def __enter__(self) -> "PeakMemory":
        self._rss = self._resident_gb()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="peak-memory")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = {"rss_gb": max(self._rss, self._resident_gb())}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.peak["gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30


def format_memory(peak: dict[str, float]) -> str:
    return ", ".join(f"peak {'RSS' if k == 'rss_gb' else 'GPU'} {v:.2f} GB" for k, v in peak.items())
