"""Segmentation training and inference speed: transferkit's segment run against a bare segmentation-models-pytorch
loop over the same model (U-Net on EfficientNet-Lite0, the packaged ImageNet weights), image size and batch, in one
run.

The bare loop is what a user writes from smp's examples: ``smp.Unet("tu-tf_efficientnet_lite0")`` with the packaged
weights loaded into its encoder, images and masks decoded with PIL and resized to the training size each epoch by a
DataLoader, horizontal flips, cross-entropy + Dice, AdamW with the encoder at a tenth of the decoder's rate,
pretrained BatchNorm statistics kept (transferkit's default). The figures are training images per second over one
epoch of the same images (transferkit's one-off decode into its cache is counted in its run, not in the epoch) and
inference images per second over the evaluation images, masks at each image's own size (a second, warm pass).

    python bench/segmentation_throughput.py [--images 48] [--eval 16] [--size 320]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_speeds, run_speeds, warm_seconds  # noqa: E402

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
AERIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "dubai_aerial_seg"
BATCH = 8


def pairs(n_train: int, n_eval: int) -> tuple[list, list]:
    stems = lambda f: (AERIAL / "splits" / f).read_text().split()  # noqa: E731
    pick = lambda ss: [(AERIAL / "images" / f"{s}.jpg", AERIAL / "masks" / f"{s}.png") for s in ss]  # noqa: E731
    return pick(stems("train.txt")[:n_train]), pick(stems("val.txt")[:n_eval])


def table(train, test, out: Path) -> Path:
    rows = ["image,mask,split"] + [f"{i},{m},train" for i, m in train] + [f"{i},{m},test" for i, m in test]
    out.write_text("\n".join(rows) + "\n")
    (out.parent / "classes.txt").write_text((AERIAL / "classes.txt").read_text())
    return out


def bare_model():
    import segmentation_models_pytorch as smp

    from transferkit.backbones import create_backbone

    weights = create_backbone("packaged:efficientnet_lite0").model.state_dict()
    model = smp.Unet("tu-tf_efficientnet_lite0", encoder_weights=None, classes=5)
    missing = model.encoder.model.load_state_dict({k: v for k, v in weights.items()
                                                   if k in model.encoder.model.state_dict()}, strict=False)
    assert not missing.missing_keys, missing.missing_keys[:3]
    return model


class BareData(torch.utils.data.Dataset):
    def __init__(self, items, size: int, train: bool):
        self.items, self.size, self.train = items, size, train

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        img, mask = self.items[i]
        x = np.asarray(Image.open(img).convert("RGB").resize((self.size, self.size), Image.BILINEAR), np.float32)
        y = np.asarray(Image.open(mask).resize((self.size, self.size), Image.NEAREST), np.int64)
        x = torch.from_numpy((x / 255 - 0.5) / 0.5).permute(2, 0, 1)
        y = torch.from_numpy(y.copy())
        if self.train and torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x, y


def run_bare(train, test, size: int) -> tuple[float, float]:
    import segmentation_models_pytorch as smp
    from PIL import Image
    from torch.nn import functional as F

    torch.manual_seed(0)
    model = bare_model()
    opt = torch.optim.AdamW([{"params": model.encoder.parameters(), "lr": 1e-4},
                             {"params": [p for n, p in model.named_parameters() if not n.startswith("encoder.")]}],
                            lr=1e-3, weight_decay=0.01)
    dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=255)
    loader = torch.utils.data.DataLoader(BareData(train, size, True), BATCH, shuffle=True, drop_last=True)
    model.train()
    for m in model.encoder.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    model.to(memory_format=torch.channels_last)
    t0, n = time.perf_counter(), 0
    for x, y in loader:
        out = model(x.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(out, y, ignore_index=255) + dice(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(x)
    train_speed = n / (time.perf_counter() - t0)
    model.eval()

    def infer():
        with torch.inference_mode():
            for i in range(0, len(test), BATCH):
                chunk = test[i:i + BATCH]
                x = torch.stack([BareData(chunk, size, False)[j][0] for j in range(len(chunk))])
                logits = model(x.contiguous(memory_format=torch.channels_last))
                for j, (img, _) in enumerate(chunk):
                    w, h = Image.open(img).size
                    F.interpolate(logits[j:j + 1], size=(h, w), mode="bilinear").argmax(1)

    return train_speed, len(test) / warm_seconds(infer)


def run_transferkit(path: Path, size: int, out: Path) -> tuple[float, float]:
    import transferkit as tk

    return run_speeds(tk.fit(str(path), task="segment", strategy="finetune", epochs=1, batch_size=BATCH,
                             image_size=size, val_fraction=0.0, output=str(out), workers=0), BATCH)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--eval", type=int, default=16)
    ap.add_argument("--size", type=int, default=320)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    train, test = pairs(a.images, a.eval)
    with tempfile.TemporaryDirectory() as tmp:
        path = table(train, test, Path(tmp) / "pairs.csv")
        bare_train, bare_infer = run_bare(train, test, a.size)
        tk_train, tk_infer = run_transferkit(path, a.size, Path(tmp) / "runs")
    print_speeds(f"dubai_aerial_seg, {a.images} training / {a.eval} evaluation images, {a.size} px, batch {BATCH}, "
                 f"{torch.get_num_threads()} threads, U-Net on EfficientNet-Lite0", "bare smp loop",
                 (bare_train, bare_infer), (tk_train, tk_infer))

if __name__ == "__main__":
    main()
