"""Multi-process training with torchrun: two CPU processes, gloo backend, tiny fixture data.

Each test launches ``python -m torch.distributed.run --standalone --nproc_per_node=2`` on a
small worker script (written below) that sets the trainer up exactly as its entry point does
(``train_segmentation`` / ``train_i2i``), runs a few steps, and saves its rank's weights and
the names of the images it trained on. The test then checks that both ranks end with
identical weights (DDP keeps replicas in lock-step), that training changed them, that the two
ranks read disjoint shards of the data, and that only rank 0 wrote checkpoints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from fixtures import write_cityscapes, write_gta5

#: seconds: only a guard against a hung torchrun, never a speed assertion (shared machines)
HANG = 900

COMMON = [
    "model.backbone=efficientnet_lite0", "model.aspp_rates=[1,2,3,4]", "discriminator.trunk=efficientnet_lite0",
    "data.long_side=64", "data.crop_size=32", "data.eval_long_side=64", "data.num_workers=0",
    "run.deterministic=true", "perf.device=cpu",
]

SEG_WORKER = textwrap.dedent('''
    import os, sys, torch
    torch.set_num_threads(1)
    from sci2i.config import load_config
    from sci2i.train.mean_teacher import MeanTeacherTrainer
    from sci2i.utils.distributed import init_distributed, is_main_process, rank, unwrap, cleanup
    from sci2i.utils.rundir import RunDir
    from sci2i.utils.runtime import resolve_device, seed_everything

    out, steps, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    cfg = load_config(None, overrides)
    device = resolve_device(cfg.perf.device)
    # as train_segmentation does
    assert init_distributed(device.type)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    run = RunDir(cfg, cfg.run.out_dir, enabled=is_main_process())
    trainer = MeanTeacherTrainer(cfg, run, device, progress=False)
    trainer.open_streams()
    names = []
    for name, stream in trainer.streams.items():
        take = stream.take
        def recording(n, take=take, name=name):
            batch = take(n)
            if batch is not None:
                names.extend(f"{name}:{x}" for x in batch["name"])
            return batch
        stream.take = recording
    initial = {k: v.clone() for k, v in unwrap(trainer.student).state_dict().items()}
    for _ in range(steps):
        trainer.train_step()
        trainer.step += 1
    trainer.save_checkpoint()
    torch.save({"student": unwrap(trainer.student).state_dict(), "teacher": trainer.teacher.state_dict(),
                "initial": initial, "names": names}, os.path.join(out, f"rank{rank()}.pt"))
    cleanup()
''')

I2I_WORKER = textwrap.dedent('''
    import os, sys, torch
    torch.set_num_threads(1)
    from sci2i.config import load_config
    from sci2i.train.i2i import I2ITrainer
    from sci2i.utils import distributed as dist_utils
    from sci2i.utils.rundir import RunDir
    from sci2i.utils.runtime import resolve_device, seed_everything

    out, steps, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    cfg = load_config(None, overrides)
    device = resolve_device(cfg.perf.device)
    # as train_i2i does
    assert dist_utils.init_distributed(device.type)
    seed_everything(cfg.run.seed + dist_utils.rank(), cfg.run.deterministic)
    run = RunDir(cfg, cfg.run.out_dir, enabled=dist_utils.is_main_process())
    trainer = I2ITrainer(cfg, run, device, progress=False)
    initial = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    trainer.open_streams()
    names = []
    for name, stream in trainer.streams.items():
        take = stream.take
        def recording(n, take=take, name=name):
            batch = take(n)
            names.extend(f"{name}:{x}" for x in batch["name"])
            return batch
        stream.take = recording
    for _ in range(steps):
        trainer.train_step()
        trainer.step += 1
    torch.save({"G": trainer.G.state_dict(), "G_ema": trainer.G_ema.state_dict(),
                "D": trainer.D.state_dict(), "initial": initial, "names": names},
               os.path.join(out, f"rank{dist_utils.rank()}.pt"))
    dist_utils.cleanup()
''')


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp-data")
    write_gta5(root / "gta", n=6, size=(64, 32), seed=1)
    write_cityscapes(root / "cs", n_per_split=4, size=(64, 32), seed=3)
    return root


def _torchrun(tmp_path: Path, worker: str, steps: int, overrides: list[str]) -> tuple[dict, dict]:
    script = tmp_path / "worker.py"
    script.write_text(worker)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(out), str(steps), *overrides]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return (torch.load(out / "rank0.pt", weights_only=True), torch.load(out / "rank1.pt", weights_only=True))


def _assert_same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{what}: ranks differ in {len(different)} tensors, e.g. {different[:3]}"


def _assert_trained(initial: dict, final: dict) -> None:
    assert any(not torch.equal(initial[k], final[k]) for k in initial if initial[k].is_floating_point())


def test_mean_teacher_two_ranks_end_with_identical_weights(data, tmp_path):
    overrides = COMMON + [
        f"data.source_root={data / 'gta'}", f"data.target_root={data / 'cs'}",
        "seg.batch_size=1", "seg.lr=1e-3", "seg.con_start=1", "seg.eval_every=0",
        f"run.out_dir={tmp_path / 'run'}",
    ]
    r0, r1 = _torchrun(tmp_path, SEG_WORKER, 3, overrides)
    _assert_same(r0["student"], r1["student"], "student")
    _assert_same(r0["teacher"], r1["teacher"], "teacher")
    _assert_trained(r0["initial"], r0["student"])
    # each rank reads its own shard: no source image is seen by both in the first epoch
    src0 = {n for n in r0["names"] if n.startswith("src:")}
    src1 = {n for n in r1["names"] if n.startswith("src:")}
    assert src0 and src1 and not src0 & src1
    # rank 0 alone writes the run directory and the checkpoint
    assert len(list((tmp_path / "run" / "checkpoints").glob("*"))) >= 1


I2I_OVERRIDES = [
    "generator.channels=[8,8,8,8]", "generator.latent_dim=8", "generator.style_dim=8",
    "generator.mapping_layers=2", "discriminator.channels=8", "i2i.batch_size=1", "i2i.lr=1e-3",
    "i2i.pseudo_labels=online",
]


def _check_i2i(r0: dict, r1: dict) -> None:
    _assert_trained(r0["initial"], r0["G"])
    src0 = {n for n in r0["names"] if n.startswith("src:")}
    src1 = {n for n in r1["names"] if n.startswith("src:")}
    assert src0 and src1 and not src0 & src1
    _assert_same(r0["G"], r1["G"], "G")
    _assert_same(r0["G_ema"], r1["G_ema"], "G_ema")
    _assert_same(r0["D"], r1["D"], "D")


def test_i2i_two_ranks_end_with_identical_weights(data, tmp_path):
    overrides = COMMON + I2I_OVERRIDES + [f"data.source_root={data / 'gta'}", f"data.target_root={data / 'cs'}"]
    _check_i2i(*_torchrun(tmp_path, I2I_WORKER, 2, overrides))
