"""The real path: packaged weights on a few real photos from ../shared (skipped when it is absent)."""

from __future__ import annotations

import pytest

import transferkit as tk

from conftest import shared_path


@pytest.mark.slow
def test_predict_names_val_photos_after_a_small_probe(tmp_path):
    hym = shared_path("data", "hymenoptera")
    root = tmp_path / "few"
    for cls in ("ants", "bees"):
        for split, n in (("train", 12), ("val", 3)):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((hym / split / cls).glob("*.jpg"))[:n]:
                (root / split / cls / f.name).symlink_to(f)
    run = tk.fit(root, strategy="linear-probe", image_size=160, output=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"))
    photos = [(f, cls) for cls in ("ants", "bees") for f in sorted((hym / "val" / cls).glob("*.jpg"))[10:15]]
    preds = tk.load(run.path).predict([str(f) for f, _ in photos])
    right = sum(p["label"] == cls for p, (_, cls) in zip(preds, photos))
    assert right >= 9, [(p["input"], p["label"]) for p in preds]  # 10 unseen val photos
