"""Builders from DataConfig, the infinite loader and bad-file skipping during training."""

import logging
from itertools import islice

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures import corrupt, write_cityscapes, write_gta5, write_image_folder, write_synthia
from sci2i.config.schema import DataConfig
from sci2i.data import build as B
from sci2i.data import GTA5Dataset, SkipBadSamples, pseudo_label_path
from sci2i.data.datasets import image_stem
from sci2i.data.stream import infinite_loader
from sci2i.errors import DataError


def _cfg(**kw) -> DataConfig:
    base = dict(source_root="", target_root="", long_side=64, crop_size=24, eval_long_side=32, num_workers=0)
    base.update(kw)
    return DataConfig(**base)


def _epochs(loader, batches_per_epoch, epochs):
    out = []
    for _ in range(epochs):
        out.append([name for batch in islice(loader, batches_per_epoch) for name in batch["name"]])
    return out


def test_infinite_loader_covers_each_epoch_and_reshuffles(tmp_path):
    write_gta5(tmp_path, n=4)
    loader = infinite_loader(GTA5Dataset(tmp_path), batch_size=2, num_workers=0, seed=0)
    epochs = _epochs(loader, 2, 4)
    for names in epochs:
        assert sorted(names) == [f"images/{k:05d}.png" for k in range(1, 5)]
    assert len({tuple(e) for e in epochs}) > 1
    batch = next(loader)
    assert batch["image"].shape == (2, 3, 32, 64) and batch["label"].shape == (2, 32, 64)


def test_loader_is_deterministic_and_independent_of_workers(tmp_path):
    cfg = _cfg(source_root=str(tmp_path))
    write_gta5(tmp_path, n=5)
    ds = B.build_source_dataset(cfg, train=True)
    a = list(islice(infinite_loader(ds, 2, num_workers=0, seed=7), 4))
    b = list(islice(infinite_loader(ds, 2, num_workers=2, seed=7), 4))
    c = list(islice(infinite_loader(ds, 2, num_workers=0, seed=8), 4))
    for x, y in zip(a, b):
        assert x["name"] == y["name"]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    assert any(x["name"] != z["name"] or not torch.equal(x["image"], z["image"]) for x, z in zip(a, c))
    assert a[0]["image"].shape == (2, 3, 24, 24)


def test_sharding_per_rank(tmp_path, monkeypatch):
    write_gta5(tmp_path, n=6)
    ds = GTA5Dataset(tmp_path)
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(B, "_world", lambda rank=rank: (rank, 2))
        sampler = B.SeededSampler(ds, seed=3)
        assert sampler.distributed
        sampler.set_epoch(1)
        shards.append([i for i, _ in sampler])
    assert len(shards[0]) == len(shards[1]) == 3
    assert sorted(shards[0] + shards[1]) == list(range(6))


def test_bad_files_are_skipped_counted_and_reported(tmp_path, caplog):
    w = write_gta5(tmp_path, n=6)
    corrupt(w.image_paths[2], "truncate")
    corrupt(w.image_paths[4], "truncate")  # headers intact: only found when read
    ds = SkipBadSamples(GTA5Dataset(tmp_path), max_bad_files=2)
    with caplog.at_level(logging.WARNING, logger="sci2i"):
        batches = list(islice(infinite_loader(ds, 3, num_workers=0, seed=0), 6))
    assert all(b["image"].shape[0] == 3 for b in batches)
    seen = {n for b in batches for n in b["name"]}
    assert "images/00003.png" not in seen and "images/00005.png" not in seen
    msgs = [r.getMessage() for r in caplog.records if "skipping a bad file" in r.getMessage()]
    assert len(msgs) == 2  # each bad file reported once, however often it is met
    assert any("00003.png" in m for m in msgs) and any("00005.png" in m for m in msgs)


def test_too_many_bad_files_stop_the_run(tmp_path):
    w = write_gta5(tmp_path, n=6)
    for k in (0, 2, 4):
        corrupt(w.image_paths[k], "truncate")
    loader = infinite_loader(GTA5Dataset(tmp_path), 2, num_workers=0, seed=0, max_bad_files=2)
    with pytest.raises(DataError, match="max_bad_files=2"):
        list(islice(loader, 12))


def test_skip_wrapper_without_loader_skips_label_of_wrong_size(tmp_path, caplog):
    w = write_cityscapes(tmp_path, splits=("train",), n_per_split=3)
    Image.fromarray(w["train"].raw_labels[1][:, :-3]).save(w["train"].label_paths[1])
    cfg = _cfg(target_root=str(tmp_path), max_bad_files=1)
    ds = B.build_target_dataset(cfg, "train", with_labels=True, train=True)
    assert isinstance(ds, SkipBadSamples) and len(ds.names) == 3
    with caplog.at_level(logging.WARNING, logger="sci2i"):
        item = ds[1]
    assert item["name"] == w["train"].names[2]  # the next sample stood in
    assert any(str(w["train"].label_paths[1]) in r.getMessage() for r in caplog.records)
    corrupt(w["train"].image_paths[2], "empty")
    with pytest.raises(DataError, match="max_bad_files=1"):
        ds[1]


def test_build_source_synthia_and_eval_mode(tmp_path):
    write_synthia(tmp_path, n=3)
    cfg = _cfg(source_format="synthia", source_root=str(tmp_path), max_images=2)
    train = B.build_source_dataset(cfg, train=True)
    assert len(train) == 2 and train[0]["image"].shape == (3, 24, 24)
    ev = B.build_source_dataset(cfg, train=False)
    item = ev[0]
    assert not isinstance(ev, SkipBadSamples)
    assert item["image"].shape == (3, 16, 32) and item["label"].shape == (32, 64)


def test_build_target_with_extra_dirs_and_pseudo_labels(tmp_path):
    w = write_cityscapes(tmp_path / "cs", splits=("train", "val"), n_per_split=2, with_sequence=True)
    extra = write_image_folder(tmp_path / "extra", ["x/1.png"])
    cfg = _cfg(target_root=str(tmp_path / "cs"),
               target_extra_dirs=[str(w["sequence"].root), str(extra.root)])
    unl = B.build_target_dataset(cfg, "train", with_labels=False, train=True)
    # the I2I target set holds each frame once: the train images are frame 19 of their
    # sequence snippets, so they are read from the sequence folder only (2 + 6 + 1 - 2)
    assert len(unl) == 6 + 1 and "label" not in unl[5]
    assert unl.names == w["sequence"].names + ["x/1.png"]
    frames = [image_stem(n) for n in unl.names]
    assert len(set(frames)) == len(frames) and {image_stem(n) for n in w["train"].names} <= set(frames)
    assert len(B.build_target_dataset(cfg, "val", with_labels=False, train=False)) == 2
    assert len(B.build_target_dataset(cfg, "train", with_labels=True, train=False)) == 2
    # pseudo labels pair with the same set (the writer labels what the I2I trainer reads)
    for k, name in enumerate(unl.names):
        p = pseudo_label_path(tmp_path / "pl", name)
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 64), k, np.uint8)).save(p)
    pl = B.build_target_dataset(cfg, "train", with_labels=True, train=False, label_dir=tmp_path / "pl")
    assert pl.names == unl.names
    assert (pl[0]["label"] == 0).all() and (pl[6]["label"] == 6).all() and pl[0]["label"].shape == (32, 64)
    val = B.build_target_dataset(cfg, "val", with_labels=True, train=False)
    np.testing.assert_array_equal(val[1]["label"].numpy(), w["val"].train_ids[1])


def test_build_translated_reads_source_labels(tmp_path):
    src = write_gta5(tmp_path / "src", n=3)
    for path in src.image_paths:  # "translated" images: same names, inverted colours
        out = tmp_path / "tr" / "images" / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - np.asarray(Image.open(path))).save(out)
    cfg = _cfg(source_root=str(tmp_path / "src"), long_side=64, crop_size=32, eval_long_side=64)
    ds = B.build_translated_dataset(tmp_path / "tr", cfg, train=False)
    item = ds[1]
    np.testing.assert_array_equal(item["label"].numpy(), src.train_ids[1])
    assert item["name"] == "images/00002.png"
    expected = 255 - torch.from_numpy(src.images[1]).permute(2, 0, 1).float()
    assert torch.allclose(item["image"] * 255, expected, atol=1e-3)
    assert B.build_translated_dataset(tmp_path / "tr", cfg, train=True)[0]["image"].shape == (3, 32, 32)


@pytest.mark.parametrize("key,env", [("source_root", "SCI2I_SOURCE_ROOT"), ("target_root", "SCI2I_TARGET_ROOT")])
def test_unset_roots_explain_the_fix(key, env):
    cfg = _cfg()
    with pytest.raises(DataError, match=f"data.{key}.*{env}"):
        if key == "source_root":
            B.build_source_dataset(cfg)
        else:
            B.build_target_dataset(cfg, "train", with_labels=False, train=True)


def test_batch_larger_than_dataset_is_an_error(tmp_path):
    write_gta5(tmp_path, n=2)
    with pytest.raises(DataError, match="batch_size=3"):
        infinite_loader(GTA5Dataset(tmp_path), 3, num_workers=0, seed=0)


def test_workers_start_after_the_main_process_used_opencv_threads(tmp_path):
    """A forked worker that changes OpenCV's thread count hangs when the main process had used
    OpenCV's thread pool (a paper-scale evaluation or toy-city generation does); the count is
    pinned in the main process before the fork instead."""
    import subprocess
    import sys

    write_gta5(tmp_path / "gta", n=4)
    script = f"""
import cv2, numpy as np
from sci2i.data.datasets import GTA5Dataset
from sci2i.data.stream import SampleStream
img = np.random.rand(2048, 2048, 3).astype(np.float32)
for _ in range(3):
    cv2.resize(img, (1024, 1024), interpolation=cv2.INTER_AREA)  # OpenCV's pool, in this process
stream = SampleStream(GTA5Dataset({str(tmp_path / 'gta')!r}), seed=0, num_workers=2)
print(stream.take(2)["image"].shape)
stream.close()
"""
    # a generous limit for the hang only
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.Size([2, 3, 32, 64])" in proc.stdout


def test_worker_count_is_capped_by_the_cores_of_each_process(monkeypatch):
    """data.num_workers=8 (the paper presets) on a 2-core machine is 2 workers per stream, and
    under torchrun each of the machine's ranks gets its share (PyTorch warns at every loader
    that asks for more workers than cores)."""
    from sci2i.utils import runtime

    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert [runtime.loader_workers(n) for n in (0, 1, 2, 8)] == [0, 1, 2, 2]
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert [runtime.loader_workers(n) for n in (0, 2, 8)] == [0, 2, 4]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert runtime.loader_workers(8) == 1  # never none when some were asked for
