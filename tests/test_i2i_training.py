"""I2I training: gradient routing of the D- and G-steps, schedules, exact resume, translate."""

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import write_cityscapes, write_gta5
from PIL import Image

from sci2i.cli import main as cli_main
from sci2i.config import load_config
from sci2i.data.datasets import GTA5Dataset, pseudo_label_path
from sci2i.losses.i2i import generator_seg_loss
from sci2i.models.stylegan_layers import NoiseInjection
from sci2i.train.i2i import I2ITrainer, LossWeights, build_i2i_datasets, loss_weights_at, train_i2i
from sci2i.utils.checkpoint import load_state, load_weights
from sci2i.utils.rundir import RunDir

TINY = [
    "generator.channels=[8,8,16,16]", "generator.latent_dim=8", "generator.style_dim=8",
    "generator.mapping_layers=2", "discriminator.trunk=efficientnet_lite0",
    "discriminator.trunk_weights=''", "discriminator.channels=16", "perf.device=cpu",
    "i2i.lr=1e-3", "i2i.ema_decay=0.9",
]


def _batch(seed: int = 0, n: int = 2, size: int = 32):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(n, 3, size, size, generator=g)
    trg = torch.rand(n, 3, size, size, generator=g)
    y_s = torch.randint(0, 19, (n, size, size), generator=g)
    y_s[:, :4] = 255
    y_t = torch.randint(0, 19, (n, size, size), generator=g)
    return src, y_s, trg, y_t


@pytest.fixture()
def trainer(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(None, TINY + ["i2i.lambda_cgan=0.3"])
    t = I2ITrainer(cfg, RunDir(cfg, tmp_path / "run", enabled=False), "cpu")
    with torch.no_grad():  # non-zero noise strength, so it can receive a gradient through the noise
        for m in t.G.modules():
            if isinstance(m, NoiseInjection):
                m.strength.fill_(0.1)
    return t


def _snapshot(params):
    return [p.detach().clone() for p in params]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_ac_head_loss_reaches_generator_through_frozen_trunk(trainer):
    src, y_s, _, _ = _batch()
    fake = trainer.G(src)
    out = trainer.D(fake)
    loss = generator_seg_loss(out.seg, y_s)
    loss.backward()
    assert all(p.grad is None for p in trainer.D.trunk.parameters())  # frozen: no parameter grads
    g_missing = [n for n, p in trainer.G.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not g_missing  # L^{G,seg} alone reaches every parameter of G


def test_discriminator_step_leaves_generator_unchanged(trainer):
    src, y_s, trg, y_t = _batch()
    g_before = _snapshot(trainer.G.parameters())
    d_before = _snapshot(trainer.D.trainable_parameters())
    trunk_before = _snapshot(trainer.D.trunk.parameters())
    fake_trunk = trainer.D.trunk_features(trainer.G(src))
    trainer._discriminator_step(fake_trunk, trg, y_s, y_t, LossWeights(0.3, 0.3), step=0)
    assert _same(g_before, trainer.G.parameters())
    assert all(p.grad is None for p in trainer.G.parameters())
    assert _same(trunk_before, trainer.D.trunk.parameters())
    missing = [n for n, p in trainer.D.named_parameters()
               if not n.startswith("trunk.") and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing  # every trainable parameter of D gets a gradient in the D-step
    assert not any(torch.equal(a, b) for a, b in zip(d_before, trainer.D.trainable_parameters()))


def test_generator_step_leaves_discriminator_unchanged(trainer):
    src, y_s, trg, _ = _batch()
    d_before = _snapshot(trainer.D.parameters())
    g_before = _snapshot(trainer.G.parameters())
    fake_trunk = trainer.D.trunk_features(trainer.G(src))
    trainer._generator_step(fake_trunk, y_s, trg, LossWeights(0.3, 0.3), step=0)
    assert _same(d_before, trainer.D.parameters())
    assert all(p.grad is None for p in trainer.D.parameters())  # D accumulated nothing
    assert all(p.requires_grad for p in trainer.D.trainable_parameters())  # switched back on
    missing = [n for n, p in trainer.G.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing  # every parameter of G gets a gradient in the G-step
    changed = [not torch.equal(a, b) for a, b in zip(g_before, trainer.G.parameters())]
    assert all(changed)


def test_full_step_updates_both_and_ema(trainer):
    src, y_s, trg, _ = _batch()
    ema_before = _snapshot(trainer.G_ema.parameters())
    g_before = _snapshot(trainer.G.parameters())
    d_before = _snapshot(trainer.D.trainable_parameters())
    trunk_before = _snapshot(trainer.D.trunk.parameters())
    losses = trainer.step_on_batch(src, y_s, trg, None, step=0)  # online pseudo labels
    for key in ("Loss/D/total", "Loss/D/seg_pl", "Loss/D/gan", "Loss/G/total", "Loss/G/seg", "Loss/G/id"):
        assert torch.isfinite(losses[key])
    # every trainable tensor of G and of D moved; D's frozen trunk did not
    assert all(not torch.equal(a, b) for a, b in zip(g_before, trainer.G.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d_before, trainer.D.trainable_parameters()))
    assert _same(trunk_before, trainer.D.trunk.parameters())
    # the EMA of G is one step of decay 0.9 (TINY) towards the updated G
    for e0, g, e in zip(ema_before, trainer.G.parameters(), trainer.G_ema.parameters()):
        torch.testing.assert_close(e, 0.9 * e0 + 0.1 * g.detach())
    assert all(not p.requires_grad for p in trainer.G_ema.parameters())


def test_loss_weight_schedules():
    cfg = load_config(None, ["i2i.fade_start=10", "i2i.fade_end=20", "i2i.lambda_pl=0.3", "i2i.lambda_cgan=0.2"])
    assert loss_weights_at(0, cfg.i2i) == LossWeights(0.3, 0.2)  # pre-computed: constant
    cfg.i2i.pseudo_labels = "online"
    assert loss_weights_at(5, cfg.i2i) == LossWeights(0.0, 0.0)
    w = loss_weights_at(15, cfg.i2i)
    assert w.lambda_pl == pytest.approx(0.15) and w.lambda_cgan == pytest.approx(0.1)
    assert loss_weights_at(25, cfg.i2i) == LossWeights(0.3, 0.2)


# ------------------------------------------------------------------ end to end on fixture data
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("i2i_data")
    src = write_gta5(root / "gta5", n=4, size=(64, 32))
    cs = write_cityscapes(root / "cityscapes", splits=("train",), n_per_split=4, size=(64, 32),
                          with_sequence=True, frames_per_snippet=2)
    pl_dir = root / "pseudo"
    seq_ids = [np.full((32, 64), 7, np.uint8)] * len(cs["sequence"].names)
    for name, ids in [*zip(cs["train"].names, cs["train"].train_ids), *zip(cs["sequence"].names, seq_ids)]:
        p = pseudo_label_path(pl_dir, name)
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids).save(p)
    return {"source": root / "gta5", "target": root / "cityscapes", "pseudo": pl_dir, "written": src,
            "sequence": cs["sequence"].root}


def _overrides(data, steps: int) -> list[str]:
    return TINY + [
        f"data.source_root={data['source']}", f"data.target_root={data['target']}",
        "data.long_side=64", "data.crop_size=32", "data.num_workers=0",
        f"i2i.pseudo_label_dir={data['pseudo']}", f"i2i.steps={steps}", "i2i.batch_size=2",
        "i2i.log_every=1", "i2i.sample_every=2", "run.checkpoint_every=2", "run.seed=3",
    ]


def test_train_resume_is_exact_and_translate_writes_gta5_layout(data, tmp_path):
    full = train_i2i(load_config(None, _overrides(data, 4)), tmp_path / "full", resume=False)
    assert full["step"] == 4 and Path(full["generator"]).is_file() and Path(full["figure"]).is_file()
    assert (tmp_path / "full" / "generator.yaml").is_file()
    assert (tmp_path / "full" / "metrics.jsonl").is_file()

    # Interrupted after 2 steps, resumed to 4 through the CLI: same weights, bit for bit.
    train_i2i(load_config(None, _overrides(data, 2)), tmp_path / "split", resume=False)
    rc = cli_main(["train-i2i", *_overrides(data, 4), "--out", str(tmp_path / "split"), "--resume"])
    assert rc == 0
    a = load_state(tmp_path / "full" / "checkpoints" / "step_00000004.pt")
    b = load_state(tmp_path / "split" / "checkpoints" / "step_00000004.pt")
    for key in ("G", "G_ema", "D"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs after resume"
    ga = load_weights(tmp_path / "full" / "generator_ema.safetensors")
    gb = load_weights(tmp_path / "split" / "generator_ema.safetensors")
    assert all(torch.equal(ga[k], gb[k]) for k in ga)

    # Translate the GTA5 root keeping its layout; the result reads as a GTA5 dataset.
    out = tmp_path / "translated"
    rc = cli_main(["translate", "--generator", str(tmp_path / "full"), "--input", str(data["source"]),
                   "--output", str(out), "--format", "gta5", "--device", "cpu"])
    assert rc == 0
    ds = GTA5Dataset(out)
    assert len(ds) == len(data["written"].names)
    for i, item in enumerate(ds):
        assert item["image"].shape == (3, 32, 64)
        assert np.array_equal(item["label"].numpy(), data["written"].train_ids[i])
    # Fixed z: deterministic. Sampled z: a different translation.
    rc = cli_main(["translate", "--generator", str(tmp_path / "full" / "generator_ema.safetensors"),
                   "--input", str(data["source"] / "images"), "--output", str(tmp_path / "again"),
                   "--device", "cpu"])
    assert rc == 0
    first = np.asarray(Image.open(out / "images" / "00001.png"))
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "again" / "00001.png")))


def test_target_set_includes_pseudo_labelled_extra_dirs(data, tmp_path):
    extra = f"data.target_extra_dirs=[{data['sequence']}]"
    src, trg = build_i2i_datasets(load_config(None, _overrides(data, 1) + [extra]))
    # each frame once: the 4 train images are frame 19 of their snippets, read from there
    assert len(src) == 4 and len(trg) == 8
    assert trg.names == build_i2i_datasets(load_config(None, _overrides(data, 1) + [extra, "i2i.pseudo_labels=online"]))[1].names
    assert trg[(6, 0)]["label"].unique().tolist() == [7]  # a sequence frame with its ŷ_t
    # Images without pseudo labels are left out (pre-computed): here only frame 19 of each
    # snippet has one ...
    no_pl = [f"i2i.pseudo_label_dir={tmp_path}"]
    (tmp_path / "aachen").mkdir()
    for name in ("aachen_000000_000019", "aachen_000002_000019"):
        Image.fromarray(np.zeros((32, 64), np.uint8)).save(tmp_path / "aachen" / f"{name}.png")
    for name in ("bochum_000001_000019", "bochum_000003_000019"):
        (tmp_path / "bochum").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((32, 64), np.uint8)).save(tmp_path / "bochum" / f"{name}.png")
    _, trg = build_i2i_datasets(load_config(None, _overrides(data, 1) + [extra] + no_pl))
    assert len(trg) == 4 and all(n.endswith("_000019_leftImg8bit.png") for n in trg.names)
    # ... and all are used unlabelled with online pseudo labels.
    _, trg = build_i2i_datasets(load_config(None, _overrides(data, 1) + [extra, "i2i.pseudo_labels=online"]))
    assert len(trg) == 8 and "label" not in trg[(0, 0)]


def test_translate_long_side_resizes_labels_too(data, tmp_path):
    from sci2i.train.i2i import save_generator
    from sci2i.models.generator import Generator
    from sci2i.infer.translate import load_generator, translate_dataset

    cfg = load_config(None, _overrides(data, 1))
    save_generator(Generator(cfg.generator), cfg, tmp_path, step=0)
    G, meta = load_generator(tmp_path)
    assert meta["data"]["source_format"] == "gta5"
    res = translate_dataset(G, data["source"], tmp_path / "small", fmt="gta5", long_side=32,
                            sample_z=True, progress=False)
    assert res["images"] == res["labels"] == 4
    ds = GTA5Dataset(tmp_path / "small")
    assert len(ds) == 4 and ds[0]["image"].shape == (3, 16, 32) and ds[0]["label"].shape == (16, 32)


def test_translate_synthia_layout_keeps_16bit_labels(tmp_path):
    from fixtures import write_synthia

    from sci2i.data.datasets import SynthiaDataset
    from sci2i.models.generator import Generator
    from sci2i.infer.translate import translate_dataset

    written = write_synthia(tmp_path / "synthia", n=2, size=(64, 32))
    G = Generator(load_config(None, TINY).generator)
    for long_side, size in ((0, (32, 64)), (32, (16, 32))):
        out = tmp_path / f"out{long_side}"
        translate_dataset(G, tmp_path / "synthia", out, fmt="synthia", long_side=long_side, progress=False)
        ds = SynthiaDataset(out)
        assert len(ds) == 2 and ds[0]["label"].shape == size
        if long_side == 0:  # same size: the labels are the source's, unchanged
            assert np.array_equal(ds[0]["label"].numpy(), written.train_ids[0])


def test_i2i_crop_size_sets_the_i2i_crops_only(data):
    """i2i.crop_size: G and D train on their own crops; 0 keeps data.crop_size."""
    from sci2i.config.loader import ConfigError

    src, trg = build_i2i_datasets(load_config(None, _overrides(data, 1) + ["i2i.crop_size=16"]))
    assert src[(0, 0)]["image"].shape[-2:] == (16, 16) and src[(0, 0)]["label"].shape[-2:] == (16, 16)
    assert trg[(0, 0)]["image"].shape[-2:] == (16, 16) and trg[(0, 0)]["label"].shape[-2:] == (16, 16)
    src, _ = build_i2i_datasets(load_config(None, _overrides(data, 1)))
    assert src[(0, 0)]["image"].shape[-2:] == (32, 32)
    with pytest.raises(ConfigError, match="i2i.crop_size"):
        load_config(None, _overrides(data, 1) + ["i2i.crop_size=65"])
