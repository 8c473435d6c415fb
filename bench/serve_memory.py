"""Peak memory of one large request to a segmentation run's ``/predict``: a ~1 MB, 64-Mpx JPEG (8000 × 8000).

Each measurement runs in a fresh process (Linux: its peak RSS, VmHWM, reset before the request): the app is built and warmed with a small request, then
the 64-Mpx request is posted; the figure is the rise of the peak RSS over the warmed app. ``banded`` is the served
code (the mask scaled back in bands of rows); ``whole`` is the same app with the former upsampling, which scaled
the logits of every class to the full image at once. Both in the same sitting, so their ratio is the claim.

    python bench/serve_memory.py [--side 8000] [--classes 5]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _whole(self, outputs):
    """The former per_item: logits scaled to the image's size for every class at once."""
    import torch.nn.functional as F

    out = []
    for logits, (h, w) in zip(outputs["logits"], outputs["sizes"].tolist()):
        p = F.interpolate(logits[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0].softmax(0)
        conf, mask = p.max(0)
        out.append({"mask": mask.to("cpu").numpy().astype(np.uint8), "confidence": float(conf.mean())})
    return out


def _kb(field: str) -> int:
    """A memory figure of this process in kB from /proc/self/status (Linux): VmRSS now, VmHWM its peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (this bench needs Linux)")


def measure(run: str, image: str, mode: str) -> dict:
    from fastapi.testclient import TestClient

    from transferkit.serve import create_app
    from transferkit.tasks import get_task

    if mode == "whole":
        get_task("segment").per_item = _whole
    small = io.BytesIO()
    Image.new("RGB", (64, 64), "gray").save(small, "JPEG")
    with TestClient(create_app(run, ui=False)) as client:
        assert client.post("/predict", files={"file": ("s.jpg", small.getvalue(), "image/jpeg")}).status_code == 200
        base = _kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from the current size
        t0 = time.perf_counter()
        r = client.post("/predict", files={"file": ("big.jpg", Path(image).read_bytes(), "image/jpeg")})
        seconds = time.perf_counter() - t0
        peak = _kb("VmHWM")
    return {"mode": mode, "status": r.status_code, "size": r.json().get("size"), "peak_rise_mb": (peak - base) / 1024,
            "base_mb": base / 1024,
            "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=8000)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    import transferkit as tk
    from conftest import SEGMENT, make_masks

    tmp = Path(tempfile.mkdtemp(prefix="serve-memory-"))
    data = make_masks(tmp / "seg", "folders", n=12)
    if args.classes > 3:
        (data / "classes.txt").write_text("\n".join(["background", "square", "disc"] +
                                                    [f"extra{i}" for i in range(args.classes - 3)]) + "\n")
    run = tk.fit(str(data), output=str(tmp / "runs"), **dict(SEGMENT, epochs=1)).path
    yy, xx = np.mgrid[0:args.side, 0:args.side]
    big = ((np.stack([xx, yy, xx + yy], -1) * 255 // (2 * args.side)) % 256).astype(np.uint8)
    Image.fromarray(big).save(tmp / "big.jpg", quality=70)
    mb = (tmp / "big.jpg").stat().st_size / 2**20
    print(f"request: {args.side}×{args.side} JPEG ({args.side ** 2 / 1e6:.0f} Mpx, {mb:.1f} MB), "
          f"{args.classes} classes")
    rows = []
    for mode in ("whole", "banded"):
        out = subprocess.run([sys.executable, __file__, "--child", str(run), str(tmp / "big.jpg"), mode],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        r = rows[-1]
        print(f"{mode:>7}: status {r['status']}, mask {r['size']}, peak RSS +{r['peak_rise_mb']:.0f} MB, "
              f"{r['seconds']:.1f} s (warmed app {r['base_mb']:.0f} MB)")
    print(f"banded / whole peak memory: {rows[1]['peak_rise_mb'] / max(rows[0]['peak_rise_mb'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
