"""One module per ``sci2i`` sub-command; each exposes ``register(subparsers)``."""
