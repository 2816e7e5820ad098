"""Typed configuration: schema (dataclasses), presets as data, ``key=value`` overrides."""

from sci2i.config.schema import Config
from sci2i.config.loader import ConfigError, config_from_yaml_text, load_config, save_config, to_yaml

__all__ = ["Config", "ConfigError", "config_from_yaml_text", "load_config", "save_config", "to_yaml"]
