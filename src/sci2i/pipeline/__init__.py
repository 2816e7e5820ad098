"""``sci2i run``: the whole method as explicit, resumable phases (docs/METHOD.md).

(a) warm-up mean teacher M0 → pseudo labels ŷ_t → (b) I2I training of G and D →
translation G(x_s) of the source set → (c) mean teacher M1 on x_s, G(x_s), x_t → evaluation
and ``report.md``.
"""

from sci2i.pipeline.runner import Pipeline, run_pipeline

__all__ = ["Pipeline", "run_pipeline"]
