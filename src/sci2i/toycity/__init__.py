"""toy-city: the embedded synthetic-to-real benchmark (a GTA5 -> Cityscapes stand-in).

Street scenes with all 19 Cityscapes classes are drawn from one scene grammar twice over:
a flat-shaded, game-like *source* in the GTA5 layout and a *target* whose surfaces are cut from
real photographs shipped with scikit-image and sci2i, with camera effects and a content
shift, in the Cityscapes layout. Generation is deterministic and runs on CPU in about a minute.

Modules: ``camera`` (projection), ``materials`` (surface -> class, source colours),
``objects`` (object models), ``scene`` (grammar), ``domains`` (content statistics),
``shapes`` (scene description and painter's rasteriser), ``render_source``, ``textures`` and
``render_target`` (the two looks), ``writer`` (layouts), ``generate`` (orchestration),
``figure`` (example figure).
"""

from sci2i.toycity.generate import (MANIFEST, ToyCitySizes, generate, is_complete, read_manifest,
                                    render_image)

__all__ = ["generate", "is_complete", "read_manifest", "render_image", "ToyCitySizes", "MANIFEST",
           "make_figure"]


def make_figure(root, out_png, n: int = 4):  # noqa: ANN001 - thin lazy wrapper (matplotlib import)
    """See ``sci2i.toycity.figure.make_figure``."""
    from sci2i.toycity.figure import make_figure as _make

    return _make(root, out_png, n)
