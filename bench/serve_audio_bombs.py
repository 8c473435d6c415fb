"""Memory of `serve` for an audio run when two decoded-size bombs are posted: a 657 KB FLAC of one hour of 48 kHz
stereo silence, and a 40 KB WAV whose header says 1 Hz (20,000 samples: 5.5 hours once resampled to 16 kHz).
Prints each answer's status and the server process's peak resident memory before and after each request.

    python bench/serve_audio_bombs.py
"""

from __future__ import annotations

import io
import os
import resource
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TRANSFERKIT_QUIET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bombs() -> dict[str, bytes]:
    import soundfile as sf

    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", 48000, 2, format="FLAC") as f:
        block = np.zeros((48000 * 60, 2), np.float32)
        for _ in range(60):
            f.write(block)
    wav = io.BytesIO()
    sf.write(wav, np.zeros(20000, np.int16), 8000, format="WAV", subtype="PCM_16")
    b = bytearray(wav.getvalue())
    b[24:28], b[28:32] = struct.pack("<I", 1), struct.pack("<I", 2)
    return {"1 h 48 kHz stereo FLAC": buf.getvalue(), "1 Hz WAV header": bytes(b)}


def main() -> None:
    from fastapi.testclient import TestClient

    import transferkit as tk
    from conftest import TINY, make_audio_folder
    from transferkit.serve import create_app

    payloads = bombs()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_audio_folder(Path(tmp) / "clips", classes=2, per_class=6)
        run = tk.fit(data, backbone=TINY, image_size=32, strategy="linear-probe", workers=0, output=f"{tmp}/runs",
                     cache_dir=f"{tmp}/c")
        with TestClient(create_app(run.path, max_bytes=10 * 2**20)) as client:
            ok = (data / "class0" / sorted(os.listdir(data / "class0"))[0]).read_bytes()
            client.post("/predict", files={"file": ("ok.wav", ok, "audio/wav")})
            print(f"{'request':28}{'bytes':>10}{'status':>8}{'peak RSS before':>17}{'after':>10}")
            for name, body in payloads.items():
                before = peak_mib()
                r = client.post("/predict", files={"file": ("x", body, "audio/wav")})
                print(f"{name:28}{len(body):10d}{r.status_code:8d}{before:14.0f} MiB{peak_mib():7.0f} MiB")
                print(f"  {r.json().get('detail', r.json())}"[:200])


if __name__ == "__main__":
    main()
