"""The paper's run at the real image sizes, one step per phase: what each phase costs.

``python -m sci2i.bench.paper_run --out DIR [--batch N]`` writes synthetic data in the real
layouts at the real sizes (GTA5 1914×1052 palette-free labelId PNGs, Cityscapes 2048×1024
with gtFine and ``leftImg8bit_sequence/train``) and a VGG16 state dict with torchvision's key
names (random weights), then runs ``sci2i run gta5-cityscapes`` through the library with every
phase cut to one step (the paper's crops, scales and networks otherwise) and prints each phase's
wall time and peak memory, as the pipeline records them in the phase's ``DONE.json``
(docs/PERFORMANCE.md "The paper's run, one step per phase").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sci2i.bench.synthetic import _image, _label
from sci2i.config import load_config
from sci2i.pipeline import run_pipeline

GTA5_SIZE = (1914, 1052)
CITYSCAPES_SIZE = (2048, 1024)
#: torchvision's vgg16-397923af.pth: (index in ``features``, in, out) and (index in ``classifier``, in, out)
VGG16_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
               (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
               (26, 512, 512), (28, 512, 512)]
VGG16_FCS = [(0, 25088, 4096), (3, 4096, 4096), (6, 4096, 1000)]


def write_vgg16_like(path: Path) -> Path:
    """Random He-initialised weights under torchvision's VGG16 key names, with the sidecar."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for i, cin, cout in VGG16_CONVS:
        state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(cout)
    for i, fin, fout in VGG16_FCS:
        state[f"classifier.{i}.weight"] = torch.randn(fout, fin, generator=g) * (2.0 / fin) ** 0.5
        state[f"classifier.{i}.bias"] = torch.zeros(fout)
    torch.save(state, path)
    Path(str(path) + ".json").write_text('{"input_norm": "torchvision"}\n')
    return path


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_paper_layout(root: Path, n_source: int = 4, n_snippets: int = 2, frames: int = 3, n_val: int = 2) -> dict:
    """GTA5 and Cityscapes (with sequence snippets around frame 19) at the real sizes."""
    rng = np.random.default_rng(0)
    gta, cs = root / "gta5", root / "cityscapes"
    for k in range(n_source):
        _save(gta / "images" / f"{k + 1:05d}.png", _image(rng, *GTA5_SIZE))
        _save(gta / "labels" / f"{k + 1:05d}.png", _label(rng, *GTA5_SIZE))
    city = "aachen"
    for k in range(n_snippets):
        stem = f"{city}_{k:06d}_000019"
        _save(cs / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png", _image(rng, *CITYSCAPES_SIZE))
        for f in range(19 - frames // 2, 19 - frames // 2 + frames):
            name = f"{city}_{k:06d}_{f:06d}_leftImg8bit.png"
            _save(cs / "leftImg8bit_sequence" / "train" / city / name, _image(rng, *CITYSCAPES_SIZE))
    for k in range(n_val):
        stem = f"frankfurt_{k:06d}_000019"
        _save(cs / "leftImg8bit" / "val" / "frankfurt" / f"{stem}_leftImg8bit.png", _image(rng, *CITYSCAPES_SIZE))
        _save(cs / "gtFine" / "val" / "frankfurt" / f"{stem}_gtFine_labelIds.png", _label(rng, *CITYSCAPES_SIZE))
    weights = root / "vgg16-397923af.pth"
    if not weights.is_file():
        write_vgg16_like(weights)
    return {"source": gta, "target": cs, "weights": weights}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sci2i.bench.paper_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the data and the run (created)")
    parser.add_argument("--batch", type=int, default=0, help="seg and I2I batch size (default: the preset's)")
    parser.add_argument("--preset", default="gta5-cityscapes", help="paper preset (default gta5-cityscapes)")
    parser.add_argument("--data-only", action="store_true", help="write the data and the weights file, then stop")
    parser.add_argument("overrides", nargs="*", help="further key=value overrides")
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = write_paper_layout(out / "data")
    if args.data_only:
        print(f"SCI2I_SOURCE_ROOT={data['source']} SCI2I_TARGET_ROOT={data['target']} "
              f"SCI2I_VGG16_WEIGHTS={data['weights']}")
        return 0
    overrides = [f"data.source_root={data['source']}", f"data.target_root={data['target']}",
                 f"model.weights={data['weights']}", f"discriminator.trunk_weights={data['weights']}",
                 "seg.steps=1", "seg.con_start=0", "i2i.steps=1", f"run.out_dir={out / 'run'}"]
    if args.batch:
        overrides += [f"seg.batch_size={args.batch}", f"i2i.batch_size={args.batch}"]
    cfg = load_config(args.preset, overrides + list(args.overrides))
    t0 = time.time()
    summary = run_pipeline(cfg)
    print(f"{cfg.name}, batch {cfg.seg.batch_size} (seg) / {cfg.i2i.batch_size} (I2I), one step per phase, "
          f"{time.time() - t0:.0f} s in all")
    print("| phase | wall s | CPU s (main process) | peak RSS GB |")
    print("| --- | ---: | ---: | ---: |")
    for done in sorted((Path(cfg.run.out_dir) / "phases").glob("*/DONE.json"), key=lambda p: p.stat().st_mtime):
        outputs = json.loads(done.read_text())
        peak = outputs.get("peak_memory", {})
        print(f"| {done.parent.name.rsplit('-', 1)[0]} | {outputs.get('seconds', float('nan')):.1f} | "
              f"{outputs.get('cpu_seconds', float('nan')):.1f} | {peak.get('rss_gb', float('nan')):.2f} |")
    ev = summary.get("final_eval") or {}
    print(f"final mIoU19 {ev.get('mIoU19', float('nan')):.2f} (random weights: a smoke figure, not a result)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
