"""Run the phases in order, skipping those whose outputs are complete.

Layout of a run directory (``run.out_dir``)::

    config.yaml  git.txt  log.txt      resolved config, code revision, log
    metrics.jsonl  tb/                 pipeline-level metrics (each phase's mIoU)
    checkpoints/{warmup,i2i,final}/    final weights (safetensors) with the config files beside them
    report.md  figures/                the report with tables in the paper's layout
    summary.json                       every figure of the report, machine-readable
    phases/<phase>-<fingerprint>/      each phase's own run directory (config, metrics, tb,
                                       checkpoints, DONE.json when complete)

A phase folder is named by a fingerprint of everything it depends on, so an interrupted run
picks up finished phases and the rows of an experiment table share identical phases.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

from sci2i.config import Config
from sci2i.errors import UserError
from sci2i.pipeline import steps
from sci2i.pipeline.fingerprint import fingerprint
from sci2i.pipeline.report import write_report
from sci2i.utils.locks import folder_lock
from sci2i.utils.distributed import barrier, broadcast_object, init_distributed, is_main_process, world_size
from sci2i.utils.rundir import RunDir
from sci2i.utils.runtime import PeakMemory, format_memory, resolve_device

log = logging.getLogger("sci2i")

DONE = "DONE.json"


def data_fingerprint(cfg: Config, world: int = 1) -> str:
    """The root of every phase fingerprint: the data, the seed and, under torchrun, the number of
    processes (``*.batch_size`` is per process, so the global batch, and with it every trained
    phase, depends on it). A single process adds nothing, so its fingerprints stay as before."""
    return fingerprint(cfg.data, cfg.run.seed, *([{"world_size": world}] if world > 1 else []))


def read_done(path: Path) -> dict:
    """The outputs a finished phase recorded; a damaged record is an error naming the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read ({e}): delete it and run the same command again "
                        f"to redo that phase") from e


def _replace(cfg: Config, **sections: dict) -> Config:
    """A copy of ``cfg`` with fields of some sections replaced: ``_replace(cfg, seg={...})``."""
    changes = {name: dataclasses.replace(getattr(cfg, name), **values) for name, values in sections.items()}
    return dataclasses.replace(cfg, **changes)


def warmup_config(cfg: Config) -> Config:
    """Phase (a): source + consistency, no translated images (paper Sec. 3.3)."""
    p = cfg.pipeline
    return _replace(
        cfg,
        seg=dict(
            steps=p.warmup_steps if p.warmup_steps is not None else cfg.seg.steps,
            lambda_con=p.warmup_lambda_con if p.warmup_lambda_con is not None else cfg.seg.lambda_con,
            translated_root="",
            second_source="translated",  # with no translated_root: x_s alone
        ),
    )


def uses_translation(cfg: Config) -> bool:
    """Whether the run trains G and mixes G(x_s) into phase (c): not with ``pipeline.i2i=false``
    (phase c on x_s alone) nor with a control set (``seg.second_source`` plain_aug / source)."""
    return cfg.pipeline.i2i and cfg.seg.second_source == "translated"


def final_steps(cfg: Config) -> int:
    p = cfg.pipeline
    return p.final_steps if p.final_steps is not None else cfg.seg.steps


#: How a summary names the segmentation phases a final model went through.
def final_config(cfg: Config, translated_root: str) -> Config:
    """Phase (c): x_s and G(x_s) 50/50 (Eq. 11) + consistency; x_s alone when
    ``translated_root`` is empty, or x_s and a control set (``seg.second_source``)."""
    p = cfg.pipeline
    lambda_con = p.final_lambda_con if p.final_lambda_con is not None else cfg.seg.lambda_con
    seg: dict[str, Any] = dict(
        steps=final_steps(cfg),
        lambda_con=lambda_con,
        translated_root=translated_root,
    )
    if p.final_con_align_prior is not None and lambda_con > 0:
        seg["con_align_prior"] = p.final_con_align_prior
    return _replace(cfg, seg=seg)


class Pipeline:
    """The three phases of the method for one configuration, in one run directory."""

    def __init__(self, cfg: Config, cache_dir: Optional[Path] = None, progress: bool = True) -> None:
        self.cfg = cfg
        self.progress = progress  # progress bars (on a terminal only); False: --no-progress
        self.out = Path(cfg.run.out_dir)
        self.cache = Path(cache_dir or cfg.pipeline.cache_dir or self.out / "phases")
        self.rundir: Optional[RunDir] = None
        self.results: dict[str, Any] = {}
        #: segmentation steps of the final model, per phase it went through (summary, tables)
        self.seg_steps: dict[str, int] = {}

    # -- phase bookkeeping -------------------------------------------------------------------
    def _phase(self, name: str, fp: str, work: Callable[[Path], dict], all_ranks: bool = False) -> dict:
        """Run ``work(dir)`` unless ``dir/DONE.json`` exists; return the recorded outputs.

        Under torchrun, training phases (``all_ranks``) run on every rank; the others (pseudo
        labels, translation) on rank 0 only. Rank 0 decides whether the phase runs (every rank
        follows its decision, so all take the same collective steps), writes ``DONE.json``
        once every output is on disk, and every rank reads the outputs from it after a barrier.
        """
        folder = self.cache / f"{name}-{fp}"
        done = folder / DONE
        if broadcast_object(done.is_file()):
            log.info("phase %s: complete in %s, skipped", name, folder)
            return read_done(done)
        main = is_main_process()
        with folder_lock(folder, enabled=main):
            # Another run sharing this phase cache (a table row, a second terminal) may have
            # finished it while we waited for the lock.
            if not broadcast_object(done.is_file()):
                if main:
                    log.info("phase %s: running in %s", name, folder)
                    folder.mkdir(parents=True, exist_ok=True)
                barrier()
                if all_ranks or main:
                    t0, cpu0 = time.time(), time.process_time()
                    with PeakMemory() as memory:
                        outputs = work(folder)
                    seconds = time.time() - t0
                    if main:
                        # time and peak memory of this invocation (a resumed phase: its last part);
                        # CPU time is the main process's (DataLoader workers are processes of their own)
                        outputs["seconds"] = outputs.get("seconds", 0.0) + seconds
                        outputs["cpu_seconds"] = time.process_time() - cpu0
                        outputs["peak_memory"] = memory.peak
                        tmp = done.with_suffix(".tmp")
                        tmp.write_text(json.dumps(outputs, indent=2))
                        tmp.replace(done)  # DONE.json appears only once every output is on disk
                        log.info("phase %s: done in %.1f s (%s)", name, seconds,
                                 format_memory(outputs["peak_memory"]))
            barrier()
        return read_done(done)

    # -- the method --------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        init_distributed(resolve_device(cfg.perf.device).type)
        if is_main_process():
            cfg = steps.ensure_toycity(cfg, self.progress)  # generates toy-city once, on rank 0
        barrier()
        self.cfg = cfg = steps.ensure_toycity(cfg, self.progress)  # the other ranks find it complete
        steps.check_data(cfg)
        # wait=True: a second `sci2i run` on this folder waits for the first, then finds its phases done
        self.rundir = RunDir(cfg, self.out, enabled=is_main_process(), wait=True)
        data_fp = data_fingerprint(cfg, world_size())

        # (a) warm-up: M0
        wcfg = warmup_config(cfg)
        warm, warm_fp = self._warmup(wcfg, data_fp)
        self._record("warmup", warm)
        if final_steps(cfg) == 0:  # no phase (c): the warm-up is the run's model
            self.seg_steps = {"warmup": warm["step"]}
            return self._finish(final=warm, final_name="warmup")

        tr, tr_fp = None, ""
        if uses_translation(cfg):
            tr, tr_fp = self._translation(cfg, warm, warm_fp, data_fp)

        # (c) final segmentation: M1, from ImageNet weights, M0, or the source-only warm-up
        fcfg = final_config(cfg, tr["root"] if tr else "")
        init, init_fp, init_phase = "", "", None
        if cfg.pipeline.final_init == "warmup":
            init, init_fp, init_phase = warm["weights"], warm_fp, "warmup"
            if not cfg.pipeline.final_init_ssl and wcfg.seg.lambda_con > 0:
                # the warm-up of Table 4's "source only" row (the same phase, shared via the cache)
                src_only, init_fp = self._warmup(
                    warmup_config(_replace(cfg, pipeline=dict(warmup_lambda_con=0.0))), data_fp)
                self._record("warmup_source_only", src_only)
                init, init_phase = src_only["weights"], "warmup_source_only"
        final_fp = fingerprint(data_fp, tr_fp, fcfg.model, dataclasses.replace(fcfg.seg, translated_root=""),
                               cfg.pipeline.final_init, init_fp)
        final = self._phase("final", final_fp, lambda d: steps.train_segmentation(
            fcfg, d, init_weights=init, progress=self.progress), all_ranks=True)
        self._record("final", final)
        # the final model's whole segmentation training: the phase it continued from, then (c)
        self.seg_steps = {**({init_phase: self.results[init_phase]["step"]} if init_phase else {}),
                          "final": final["step"]}
        return self._finish(final=final, final_name="final", translate=tr)

    def _translation(self, cfg: Config, warm: dict, warm_fp: str, data_fp: str) -> tuple[dict, str]:
        """Pseudo labels ŷ_t, phase (b), G(x_s) and its KID: the translate phase's outputs and
        fingerprint."""
        # pseudo labels ŷ_t from M0's teacher (skipped with online pseudo labels)
        pl_dir = ""
        pl_fp = "online"
        if cfg.i2i.pseudo_labels == "precomputed":
            pl_fp = fingerprint(warm_fp, "pseudo")
            pl = self._phase("pseudo_labels", pl_fp,
                             lambda d: steps.write_pseudo_labels(warm["weights"], cfg, d, self.progress))
            self._record("pseudo_labels", pl)  # its seconds count in M1's time (report.MODEL_PHASES)
            pl_dir = pl["label_dir"]

        # (b) I2I: G and D
        icfg = _replace(cfg, i2i=dict(pseudo_label_dir=pl_dir))
        i2i_fp = fingerprint(data_fp, pl_fp, cfg.generator, cfg.discriminator,
                             dataclasses.replace(cfg.i2i, pseudo_label_dir=""))
        i2i = self._phase("i2i", i2i_fp, lambda d: steps.train_i2i(icfg, d, self.progress), all_ranks=True)
        self._record("i2i", i2i)

        # G(x_s): the translated source set
        tr_fp = fingerprint(i2i_fp, cfg.pipeline.translate_z)
        tr = self._phase("translate", tr_fp,
                         lambda d: steps.translate_source(i2i["generator"], cfg, d, self.progress))
        self._record("translate", tr)
        if cfg.pipeline.kid_images > 0:  # its distance to the target in look (sci2i.eval.kid)
            kid_fp = fingerprint(tr_fp, cfg.discriminator.trunk, cfg.discriminator.trunk_weights,
                                 cfg.pipeline.kid_images, cfg.data.eval_long_side)
            self.results["kid"] = self._phase("kid", kid_fp, lambda d: steps.translation_kid(tr["root"], cfg, d))
        return tr, tr_fp

    def _warmup(self, wcfg: Config, data_fp: str) -> tuple[dict, str]:
        """A warm-up phase (a) for ``wcfg`` (run or found in the cache): its outputs and fingerprint."""
        fp = fingerprint(data_fp, wcfg.model, wcfg.seg)
        return self._phase("warmup", fp, lambda d: steps.train_segmentation(wcfg, d, progress=self.progress),
                           all_ranks=True), fp

    def _record(self, name: str, outputs: dict) -> None:
        self.results[name] = outputs
        ev = outputs.get("eval")
        if ev and self.rundir is not None:
            self.rundir.log_metrics("pipeline", len(self.results),
                                    {f"{name}/{k}": ev[k] for k in ("mIoU19", "mIoU16", "mIoU13", "mIoU") if k in ev})

    def _finish(self, final: dict, final_name: str, translate: Optional[dict] = None) -> dict:
        summary = {
            "name": self.cfg.name,
            "final_phase": final_name,
            "phases": self.results,
            "final_eval": final.get("eval"),
            "warmup_eval": self.results["warmup"].get("eval"),
            "seg_steps": {"phases": self.seg_steps, "total": sum(self.seg_steps.values())},
        }
        if "kid" in self.results:
            summary["kid"] = {k: self.results["kid"][k]
                              for k in ("features", "source_vs_target", "translated_vs_target")}
        if not is_main_process():
            return summary

        ckpt = self.out / "checkpoints"
        exports = {"warmup": self.results["warmup"]["weights"]}
        if "i2i" in self.results:
            exports["i2i"] = self.results["i2i"]["generator"]
        if final_name == "final":
            exports["final"] = final["weights"]
        for phase, weights in exports.items():
            # weights and the config file(s) written beside them (teacher.yaml, generator.yaml)
            src = Path(weights)
            dst = ckpt / phase
            dst.mkdir(parents=True, exist_ok=True)
            for f in [src, *src.parent.glob("*.yaml")]:
                if f.is_file() and f.name != "config.yaml":
                    shutil.copyfile(f, dst / f.name)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        write_report(self.cfg, self.out, summary, translate)
        if self.rundir is not None:
            self.rundir.close()
        log.info("report: %s", self.out / "report.md")
        return summary


def run_pipeline(cfg: Config, cache_dir: Optional[Path] = None, progress: bool = True) -> dict:
    return Pipeline(cfg, cache_dir, progress).run()
