"""Resolve a configuration: schema defaults <- preset/YAML (with ``base:`` chains) <- ``key=value``.

Errors name the offending key and suggest the closest valid one; types are checked by
OmegaConf against the dataclass schema; value checks live in :func:`validate`.
"""

from __future__ import annotations

import difflib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sci2i.config.schema import (ALIGN_PRIORS, CON_LOSSES, CON_MIXES, OUTPUT_STRIDES, SECOND_SOURCES,
                                 SEG_HEADS, Config)

PRESET_DIR = Path(__file__).with_name("presets")


class ConfigError(ValueError):
    """A configuration problem, with a message that says how to fix it."""


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _all_keys(cls: Any = Config, prefix: str = "") -> list[str]:
    keys = []
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        keys.append(key)
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            keys.extend(_all_keys(type(default), key + "."))
    return keys


def _mapping_keys(cls: Any = Config, prefix: str = "") -> set[str]:
    """Keys whose value is a free-form mapping (``Dict[str, ...]``), not a section."""
    out: set[str] = set()
    for f in fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            out |= _mapping_keys(type(default), f"{prefix}{f.name}.")
        elif isinstance(default, dict):
            out.add(f"{prefix}{f.name}")
    return out


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, _all_keys(), n=1, cutoff=0.5)
    if not close:
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in _all_keys() if k.rsplit(".", 1)[-1] == leaf][:1]
    return f" Did you mean '{close[0]}'?" if close else ""


def _section_keys(cls: Any = Config, prefix: str = "") -> set[str]:
    """Keys whose value is a section of the schema (a dataclass: ``seg``, ``data``, ...)."""
    out: set[str] = set()
    for f in fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            out.add(f"{prefix}{f.name}")
            out |= _section_keys(type(default), f"{prefix}{f.name}.")
    return out


def _check_keys(tree: Any, origin: str, prefix: str = "") -> None:
    valid = set(_all_keys())
    if not isinstance(tree, dict):
        return
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if key not in valid:
            raise ConfigError(f"unknown config key '{key}' in {origin}.{_suggest(key)}")
        if key in _section_keys() and not isinstance(v, dict):
            raise ConfigError(
                f"'{key}' in {origin} must be a mapping of its keys (e.g. {key}: {{steps: 100}} "
                f"in YAML, or {key}.KEY=VALUE on the command line); got "
                f"{'nothing' if v is None else type(v).__name__ + ' ' + repr(v)}"
            )
        if isinstance(v, dict) and key not in _mapping_keys():
            _check_keys(v, origin, key + ".")


def _read_yaml_chain(name_or_path: str, seen: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    path = Path(name_or_path)
    # A preset name wins over a same-named folder (the demo's data lives in ./toycity).
    if not (path.suffix in (".yaml", ".yml") or path.is_file()):
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(
                f"'{name_or_path}' is neither a preset nor a YAML file. Presets: "
                f"{', '.join(list_presets())}.{_closest_preset(name_or_path)}"
            )
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if str(path) in seen:
        raise ConfigError(f"config 'base:' chain loops through {path}")
    tree = _parse_yaml(path.read_text(), str(path))
    base = tree.pop("base", None)
    chain = _read_yaml_chain(str(base), seen + (str(path),)) if base else []
    return chain + [(str(path), tree)]


def _parse_yaml(text: str, origin: str) -> dict:
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin} is not valid YAML: {e}") from e
    if not isinstance(tree, dict):
        raise ConfigError(f"{origin} must hold a mapping of config keys, got {type(tree).__name__}")
    return tree


def _closest_preset(name: str) -> str:
    close = difflib.get_close_matches(name, list_presets(), n=1, cutoff=0.4)
    return f" Did you mean '{close[0]}'?" if close else ""


def split_preset(first: str | None, rest: Iterable[str] = ()) -> tuple[str | None, list[str]]:
    """``[PRESET_OR_YAML] [key=value ...]`` -> (preset or None, overrides).

    A first word with ``=`` (and no YAML suffix) is an override: ``sci2i run seg.steps=10``.
    """
    if first is not None and "=" in first and not first.endswith((".yaml", ".yml")):
        return None, [first, *rest]
    return first, list(rest)


# YAML 1.1 reads these as booleans; on the command line they are kept as words, which OmegaConf
# converts for boolean fields and keeps for string fields (perf.amp=off).
_YAML11_WORDS = {"on", "off", "yes", "no", "y", "n"}


def parse_overrides(overrides: Iterable[str]) -> dict:
    """``["a.b=1", "c=[1,2]"]`` -> nested dict, values parsed as YAML scalars/lists."""
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. seg.steps=100)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if raw.strip().lower() in _YAML11_WORDS:
            value = raw.strip()  # `perf.amp=off` is the string "off"; bool fields still accept it
        else:
            try:
                value = yaml.safe_load(raw) if raw != "" else ""
            except yaml.YAMLError:
                value = raw
        node = tree
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' sets a key below a value")
        node[parts[-1]] = value
    return tree


def load_config(preset_or_yaml: str | None = None, overrides: Iterable[str] = ()) -> Config:
    """Merge defaults, a preset or YAML file (following ``base:``), then overrides; validate."""
    layers: list[tuple[str, dict]] = []
    if preset_or_yaml:
        layers += _read_yaml_chain(preset_or_yaml)
    overrides = list(overrides)
    if overrides:
        layers.append(("command-line overrides", parse_overrides(overrides)))
    return _merge(layers)


def config_from_yaml_text(text: str, origin: str) -> Config:
    """A config written as YAML text (the ``config`` a training checkpoint carries), checked and
    validated exactly as a config file would be; ``origin`` names it in errors."""
    return _merge([(origin, _parse_yaml(text, origin))])


def _merge(layers: list[tuple[str, dict]]) -> Config:
    """Defaults, then each (origin, tree) layer in order; resolved and validated."""
    cfg = OmegaConf.structured(Config)
    for origin, tree in layers:
        _check_keys(tree, origin)
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(tree))
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", "") or ""
            raise ConfigError(f"bad value for '{key}' in {origin}: {e.msg if hasattr(e, 'msg') else e}") from e
    try:
        obj: Config = OmegaConf.to_object(cfg)  # resolves ${oc.env:...}
    except OmegaConfBaseException as e:
        raise ConfigError(f"could not resolve config: {e}") from e
    validate(obj)
    return obj


_CHOICES = {
    "data.source_format": ("gta5", "synthia"),
    "data.class_set": ("cityscapes19", "synthia16"),
    "model.head": SEG_HEADS,
    "model.backbone": ("vgg16", "efficientnet_lite0", "resnet101"),
    "discriminator.trunk": ("vgg16", "efficientnet_lite0"),
    "i2i.gan_loss": ("lsgan", "sgan"),
    "i2i.pseudo_labels": ("precomputed", "online"),
    "perf.amp": ("auto", "off", "bf16", "fp16"),
    "pipeline.final_init": ("imagenet", "warmup"),
    "pipeline.translate_z": ("fixed", "sample"),
    "seg.con_loss": CON_LOSSES,
    "seg.con_mix": CON_MIXES,
    "seg.con_align_prior": ALIGN_PRIORS,
    "seg.second_source": SECOND_SOURCES,
    "pipeline.final_con_align_prior": (None, *ALIGN_PRIORS),
}


def _get(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for p in key.split("."):
        node = getattr(node, p)
    return node


def validate(cfg: Config) -> None:
    """Impossible values fail here, before any work starts."""
    for key, choices in _CHOICES.items():
        v = _get(cfg, key)
        if v not in choices:
            names = ", ".join("null" if c is None else c for c in choices)
            raise ConfigError(f"'{key}' must be one of {names}; got '{v}'")
    nonneg = [
        "seg.lambda_con", "seg.lambda_src", "seg.lambda_trg_sup", "seg.con_start", "seg.steps",
        "i2i.lambda_pl", "i2i.lambda_cgan", "i2i.lambda_gseg", "i2i.lambda_id", "i2i.steps",
        "seg.noise_std", "seg.jitter", "data.max_images", "data.num_workers", "data.max_bad_files",
        "seg.weight_decay", "run.max_nonfinite_steps", "probe.steps",
        "i2i.kid_images", "pipeline.kid_images", "pipeline.toycity_seed", "i2i.crop_size",
    ]
    for key in nonneg:
        if _get(cfg, key) < 0:
            raise ConfigError(f"'{key}' must be >= 0; got {_get(cfg, key)}")
    positive = [
        "seg.lr", "i2i.lr", "seg.batch_size", "i2i.batch_size", "data.crop_size",
        "data.long_side", "data.eval_long_side", "seg.grad_clip", "i2i.grad_clip",
        "run.checkpoint_every", "run.keep_checkpoints", "seg.log_every", "i2i.log_every",
        "probe.lr", "probe.batch_size",
        "i2i.sample_every", "generator.latent_dim", "generator.style_dim",
        "generator.mapping_layers", "discriminator.channels", "discriminator.num_res_blocks",
    ]
    for key in positive:
        if not _get(cfg, key) > 0:
            raise ConfigError(f"'{key}' must be > 0; got {_get(cfg, key)}")
    for key in ("seg.ema_decay", "i2i.ema_decay", "seg.translated_fraction"):
        if not 0.0 <= _get(cfg, key) <= 1.0:
            raise ConfigError(f"'{key}' must lie in [0, 1]; got {_get(cfg, key)}")
    if not 0.0 < cfg.seg.lr_gamma <= 1.0:
        raise ConfigError(f"'seg.lr_gamma' must lie in (0, 1]; got {cfg.seg.lr_gamma}")
    for key, fix in (("data.crop_size", "lower the crop or raise long_side"),
                     ("i2i.crop_size", "lower the crop (0 = data.crop_size)")):
        if _get(cfg, key) > cfg.data.long_side:
            raise ConfigError(
                f"'{key}' ({_get(cfg, key)}) is larger than the rescaled image's long "
                f"side 'data.long_side' ({cfg.data.long_side}); {fix}"
            )
    for key in ("pipeline.warmup_lambda_con", "pipeline.final_lambda_con",
                "pipeline.warmup_steps", "pipeline.final_steps"):
        v = _get(cfg, key)
        if v is not None and v < 0:
            raise ConfigError(f"'{key}' must be >= 0 or null; got {v}")
    if cfg.i2i.fade_end < cfg.i2i.fade_start:
        raise ConfigError("'i2i.fade_end' must not come before 'i2i.fade_start'")
    if len(cfg.generator.channels) != 4 or min(cfg.generator.channels) <= 0:
        raise ConfigError(
            "'generator.channels' needs 4 positive widths: the stem and the three stride-2 stages"
        )
    if not 0.0 <= cfg.seg.con_threshold < 1.0:
        raise ConfigError(f"'seg.con_threshold' must be in [0, 1); got {cfg.seg.con_threshold}")
    strides = OUTPUT_STRIDES.get(cfg.model.backbone, (8,))
    if cfg.model.output_stride not in strides:
        raise ConfigError(
            f"'model.output_stride' must be one of {', '.join(map(str, strides))} for backbone "
            f"'{cfg.model.backbone}'; got {cfg.model.output_stride}"
        )
    if cfg.model.backbone == "resnet101" and not cfg.model.freeze_bn:
        raise ConfigError(
            "'model.freeze_bn' must stay true for backbone 'resnet101': DeepLab-v2 ResNet-101 keeps "
            "every BatchNorm frozen, statistics and affine (sci2i.models.resnet)"
        )
    if cfg.model.backbone == "resnet101" and cfg.model.head != "aspp":
        raise ConfigError(
            f"'model.head={cfg.model.head}' is DeepLab-v2 VGG16's; DeepLab-v2 ResNet-101 puts the ASPP "
            "straight on layer4: set model.head=aspp (the *-r101 presets do)"
        )
    if len(cfg.model.aspp_rates) != 4:
        raise ConfigError("'model.aspp_rates' needs the four ASPP dilation rates")
    if not cfg.model.head_lr_mult > 0:
        raise ConfigError(f"'model.head_lr_mult' must be > 0; got {cfg.model.head_lr_mult}")
    for key in ("seg.betas", "i2i.betas"):
        betas = list(_get(cfg, key))
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"'{key}' must be Adam's two betas [beta1, beta2], each in [0, 1); got {betas}")
    _check_device(cfg.perf.device)
    sig = list(cfg.seg.blur_sigma)
    if len(sig) != 2 or not 0.0 <= sig[0] <= sig[1]:
        raise ConfigError(f"'seg.blur_sigma' must be [min, max] with 0 <= min <= max; got {sig}")


def _check_device(name: str) -> None:
    """``perf.device``: auto, cpu, cuda or cuda:N, and a CUDA device only where there is one."""
    import re

    if name in ("auto", "cpu"):
        return
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m is None:
        raise ConfigError(f"'perf.device' must be auto, cpu, cuda or cuda:N; got '{name}'")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"'perf.device' is {name} but no CUDA device is available here (PyTorch "
                          f"{torch.__version__}); use perf.device=cpu or perf.device=auto")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise ConfigError(f"'perf.device' is {name} but this machine has {torch.cuda.device_count()} "
                          f"CUDA device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(to_yaml(cfg))


def require_dir(path: str, key: str, expected: str) -> Path:
    """A dataset root that must exist; the error names the key and the layout expected."""
    if not path:
        raise ConfigError(f"'{key}' is not set. Pass {key}=/path/to/data; expected layout: {expected}")
    p = Path(path)
    if not p.is_dir():
        raise ConfigError(f"'{key}' = {p} does not exist or is not a folder; expected layout: {expected}")
    return p
