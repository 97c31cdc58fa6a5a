import os
import warnings
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFRED_CELL_TIMEOUT", "900")      # chapter cells at quick scale
os.environ.setdefault("DIFFRED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
warnings.filterwarnings("ignore", category=UserWarning)


def _image_folder(root, classes=("0", "1", "2"), per_class=15, splits=None):
    """Real hand-sign photos (the book's sign_digits archive) in ``root/<class>/`` (or under
    ``root/<split>/<class>/``, ``per_class`` images per class and split)."""
    from diffred.core.datasets import find_file
    with zipfile.ZipFile(find_file("vision/sign-language-digits.zip", "sign_digits")) as z:
        names = z.namelist()
        for c in classes:
            files = sorted(n for n in names if n.startswith(f"Dataset/{c}/") and n.endswith(".JPG"))
            for i, split in enumerate(splits or [None]):
                folder = root / split / c if split else root / c
                folder.mkdir(parents=True)
                for n in files[i * per_class:(i + 1) * per_class]:
                    (folder / n.rsplit("/", 1)[1]).write_bytes(z.read(n))
    return root


@pytest.fixture
def image_folder():
    """Lay out an image folder of real photos: ``image_folder(root, classes, per_class, splits)``."""
    return _image_folder
