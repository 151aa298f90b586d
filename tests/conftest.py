"""Shared fixtures: generated images with visible gradients, image folders, real photos.

Tests use these through fixtures (never ``import conftest``), so test folders of other parts
of the project may hold their own conftest without clashing. Every generated image differs
from pixel to pixel along both axes, so a crop or resize that is off by one pixel changes the
output. Nothing here touches the network.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from imagegen import gradient, gradient_array  # noqa: F401  (re-exported)
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "examples" / "photos"


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def make_folder(root: Path, spec: dict[str, list[tuple[int, int]]], ext: str = "png") -> Path:
    """``root/<class>/img{i}.{ext}`` gradient images; ``spec`` maps class -> list of sizes.

    Each image gets a class- and index-dependent tint so no two files are equal.
    """
    for c, (class_name, sizes) in enumerate(spec.items()):
        folder = root / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for i, (w, h) in enumerate(sizes):
            arr = gradient_array(w, h)
            arr[..., 2] = (arr[..., 2].astype(int) + 40 * c + 17 * i) % 256
            img = Image.fromarray(arr, "RGB")
            fmt = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[ext]
            extra = {"quality": 95} if ext == "jpg" else {}
            img.save(folder / f"img{i}.{ext}", fmt, **extra)
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(name="gradient")
def gradient_fixture():
    """Factory: ``gradient(width, height, mode="RGB")``."""
    return gradient


@pytest.fixture(name="encode")
def encode_fixture():
    """Factory: ``encode(img, fmt="JPEG", **save_kwargs) -> bytes``."""
    return encode


@pytest.fixture(name="make_folder")
def make_folder_fixture():
    """Factory: ``make_folder(root, {class: [(w, h), ...]}, ext="png") -> root``."""
    return make_folder


@pytest.fixture(name="read_jsonl")
def read_jsonl_fixture():
    return read_jsonl


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three classes, odd sizes, landscape and portrait, all large enough for 32/24 crops."""
    spec = {
        "ant": [(61, 47), (47, 61), (53, 53), (71, 40)],
        "bee": [(40, 71), (64, 48), (45, 59)],
        "cat": [(99, 101), (57, 41), (41, 57), (50, 50), (66, 44)],
    }
    return make_folder(tmp_path / "images", spec)


@pytest.fixture(scope="session")
def photos() -> Path:
    assert PHOTOS.is_dir(), f"{PHOTOS} is missing; the tests use the bundled example photos"
    return PHOTOS


@pytest.fixture(scope="session")
def photo_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two images of each class of examples/photos, symlinked into a small folder."""
    root = tmp_path_factory.mktemp("photo_subset")
    for class_dir in sorted(p for p in PHOTOS.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir()
        for f in sorted(class_dir.iterdir())[:2]:
            (root / class_dir.name / f.name).symlink_to(f)
    return root
