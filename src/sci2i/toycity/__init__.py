"""toy-city: the embedded synthetic-to-real benchmark (a GTA5 -> Cityscapes stand-in).

Street scenes with all 19 Cityscapes classes are drawn from one scene grammar twice over:
a flat-shaded, game-like *source* in the GTA5 layout and a *target* whose surfaces are cut from
real photographs shipped with scikit-image and sci2i, with camera effects and a content
shift, in the Cityscapes layout. Generation is deterministic and runs on CPU in about a minute.

Modules: ``camera`` (projection), ``materials`` (surface -> class, source colours),
``objects`` (object models), ``scene`` (grammar), ``domains`` (content statistics),
``shapes`` (scene description and painter's rasteriser), ``render_source``, ``textures`` and
``render_target`` (the two looks), ``writer`` (layouts), ``generate`` (orchestration). The
example figure is :func:`sci2i.figures.toycity.make_figure`.
"""

from sci2i.toycity.generate import (MANIFEST, ToyCitySizes, generate, is_complete, read_manifest,
                                    render_image)

__all__ = ["generate", "is_complete", "read_manifest", "render_image", "ToyCitySizes", "MANIFEST"]
