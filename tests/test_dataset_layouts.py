"""Labelled folders as public datasets ship them (new-user trial with look-alikes of EuroSAT, AID,
RSI-CB and torchgeo splits): hidden and macOS files, layouts that are not one folder per class,
empty and very large images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsir_stac.errors import DatasetError, ImageReadError
from rsir_stac.model.data import load_images, scan_image_folder
from tests.conftest import make_image_folder


def test_hidden_files_and_macos_leftovers_are_not_images_of_a_class(tmp_path):
    """Trial: '._x.png' AppleDouble files (one per image of a zip made on a Mac) were refused as
    undecodable images, hidden images were trained on, and __MACOSX was advised to be moved in."""
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    (data / "class0" / "._img00.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    Image.new("RGB", (48, 48)).save(data / "class1" / ".hidden.png")
    mac = data / "__MACOSX" / "class0"
    mac.mkdir(parents=True)
    (mac / "._img00.png").write_bytes(b"\x00\x05\x16\x07")
    folder = scan_image_folder(data)
    assert folder.classes == ("class0", "class1") and len(folder) == 6
    assert not [p for p in folder.paths if p.name.startswith(".")]
    assert len(load_images(folder.paths)) == 6


def test_layouts_without_class_folders_say_which_folder_to_pass(tmp_path):
    split = tmp_path / "split"
    for part in ("train", "val", "test"):
        make_image_folder(split / part, classes=2, per_class=2)
    with pytest.raises(DatasetError) as ei:
        scan_image_folder(split)
    assert f"it is split into test, train, val folders of classes: pass one of them, e.g. `rsir-stac train " \
           f"{split / 'train'}` and `rsir-stac evaluate {split / 'test'} --split all`" in str(ei.value)

    nested = tmp_path / "rsicb"
    make_image_folder(nested / "agricultural land", classes=2, per_class=2)
    make_image_folder(nested / "transportation", classes=2, per_class=2)
    with pytest.raises(DatasetError, match=r"its classes lie one level down \(agricultural land/class0, "
                                           r"agricultural land/class1, transportation/class0 and 1 more\): pass one "
                                           r"group's folder"):
        scan_image_folder(nested)

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32)).save(flat / f"{i}.png")
    with pytest.raises(DatasetError, match=r"its 4 image\(s\) lie directly in it: put each class's images in a "
                                           r"sub-folder named after the class"):
        scan_image_folder(flat)


def test_an_empty_file_is_named_empty(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    (data / "class1" / "zero.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"zero\.jpg cannot be decoded \(an empty file, 0 bytes\)"):
        load_images(scan_image_folder(data).paths)


def test_a_very_large_image_in_a_class_folder_is_read_not_a_crash(tmp_path, monkeypatch):
    """Trial: a 196-megapixel JPEG (over Pillow's decompression-bomb limit) made evaluate and train
    fail with "unexpected DecompressionBombError", naming no file; search --image read it.  Pillow's
    limit is lowered here so that a small image stands for it."""
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)   # error above 10,000 px, warning above 5,000
    data = make_image_folder(tmp_path / "data", classes=2, per_class=3, size=48)   # 2,304 px: read by Pillow
    Image.fromarray(np.full((150, 150, 3), 90, np.uint8)).save(data / "class0" / "huge.jpg")   # 22,500 px
    Image.fromarray(np.full((80, 80, 3), 90, np.uint8)).save(data / "class1" / "big.jpg")      # 6,400 px
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no DecompressionBombWarning printed either
        images = load_images(scan_image_folder(data).paths)
    assert sorted(im.shape for im in images)[-2:] == [(80, 80, 3), (150, 150, 3)]
