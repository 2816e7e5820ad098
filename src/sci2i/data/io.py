"""Reading images and label maps in the real on-disk formats (docs/DATA.md).

Every reader returns plain numpy arrays and raises :class:`sci2i.errors.DataError` naming the
file for anything it cannot decode (missing, truncated, random bytes, wrong kind of image), so
callers only ever need to handle that one exception.

=================  ==========================================  =============================
reader             format                                      returns
=================  ==========================================  =============================
read_rgb           any 8/16-bit image PIL can open             H×W×3 uint8 RGB
read_label_ids     GTA5 palette PNG (palette INDEX = labelId)  H×W uint8 Cityscapes labelIds
                   or Cityscapes ``*_gtFine_labelIds.png``
read_synthia_ids   SYNTHIA ``GT/LABELS`` 16-bit multi-channel  H×W int64 raw SYNTHIA ids
                   PNG, class id in the R channel
read_train_ids     trainId PNG (pseudo labels, exports)        H×W uint8 trainIds
=================  ==========================================  =============================
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sci2i.errors import DataError

#: File extensions treated as images by folder readers (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def _open_pil(path: Path) -> Image.Image:
    """Open and fully decode ``path`` with PIL; any failure becomes a DataError naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()  # decode now: truncated data raises here, not later in a worker
        return img
    except FileNotFoundError as e:
        raise DataError(f"file not found: {path}") from e
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from e


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError as e:
        raise DataError(f"file not found: {path}") from e
    except Exception as e:
        raise DataError(f"cannot read image header of {path}: {type(e).__name__}: {e}") from e


def verify_image_file(path: str | Path) -> None:
    """Check that ``path`` is a whole image file (PNG: every chunk present with a valid CRC)
    without decoding its pixels; a DataError names the file otherwise."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.verify()
    except FileNotFoundError as e:
        raise DataError(f"file not found: {path}") from e
    except Exception as e:
        raise DataError(f"damaged image file {path}: {type(e).__name__}: {e}. Replace it with a "
                        f"good copy (validation files are never skipped: scores must be comparable)") from e


def read_rgb(path: str | Path) -> np.ndarray:
    """An image as H×W×3 uint8 RGB (grey, palette and RGBA images are converted)."""
    path = Path(path)
    img = _open_pil(path)
    try:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the high byte
            arr = np.asarray(img, dtype=np.uint32) >> 8
            arr = np.repeat(arr.astype(np.uint8)[..., None], 3, axis=2)
        else:
            arr = np.array(img.convert("RGB"), dtype=np.uint8)
    except Exception as e:
        raise DataError(f"cannot convert image {path} to RGB: {type(e).__name__}: {e}") from e
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise DataError(f"image {path} has unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_label_ids(path: str | Path) -> np.ndarray:
    """Cityscapes labelIds (H×W uint8) from a palette PNG (GTA5) or a grey PNG (gtFine).

    GTA5 labels are 8-bit palette images whose palette *index* is the Cityscapes labelId;
    reading the indices (not the RGB colours) is what makes the mapping exact.
    """
    path = Path(path)
    img = _open_pil(path)
    if img.mode not in ("P", "L"):
        raise DataError(
            f"label {path} has PIL mode {img.mode!r}; expected an 8-bit palette ('P') or grey "
            f"('L') PNG whose values are Cityscapes labelIds"
        )
    arr = np.array(img, dtype=np.uint8)
    if arr.ndim != 2 or arr.size == 0:
        raise DataError(f"label {path} has unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_train_ids(path: str | Path) -> np.ndarray:
    """trainIds (H×W uint8) from a grey or palette PNG, e.g. pseudo labels (255 = ignore)."""
    return read_label_ids(path)


def read_synthia_ids(path: str | Path) -> np.ndarray:
    """Raw SYNTHIA class ids (H×W int64) from a ``GT/LABELS`` 16-bit multi-channel PNG.

    The class id is in the first (R) channel. OpenCV's ``IMREAD_UNCHANGED`` returns channels
    as BGR(A), so R is channel index 2 (the last channel of a 3-channel file; for a 4-channel
    BGRA file it is *not* the last one). A single-channel file is taken as the ids directly.
    Plain PIL cannot read these files (it truncates 48-bit PNGs to 8 bits).
    """
    path = Path(path)
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError as e:
        raise DataError(f"file not found: {path}") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e
    arr = None
    if buf.size:
        try:
            arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        except cv2.error as e:
            raise DataError(f"cannot decode SYNTHIA label {path}: {e}") from e
    if arr is None or arr.size == 0:
        raise DataError(f"cannot decode SYNTHIA label {path} (truncated or not an image)")
    if arr.ndim == 3:
        if arr.shape[2] < 3:
            raise DataError(f"SYNTHIA label {path} has {arr.shape[2]} channels; expected 3 or 4")
        arr = arr[:, :, 2]
    if arr.ndim != 2:
        raise DataError(f"SYNTHIA label {path} has unexpected shape {arr.shape}")
    return arr.astype(np.int64)


def list_images(folder: str | Path, suffix: str = "") -> list[Path]:
    """Image files below ``folder`` (recursive), sorted; optionally only names ending ``suffix``."""
    folder = Path(folder)
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.name.endswith(suffix) and p.is_file()
    ]
    return sorted(files)
