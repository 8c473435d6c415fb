"""The demo page ``serve`` mounts, attacked over real HTTP: it reads only what a request uploaded (never a server
file, the run folder, a path with ``..`` or a symlink), keeps the JSON API's size and pixel limits, decodes with the
same checked decoder (so both give the same answer), and shows a run's name as text."""

from __future__ import annotations

import io
import json
import os
import uuid
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit as tk

from conftest import FAST, make_folder, served_app

pytest.importorskip("gradio")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")


def served(run):
    """``serve``'s app for ``run`` (with its demo page, a 2 MiB request limit) on a free local port."""
    from transferkit.serve import create_app

    return served_app(create_app(run, max_bytes=2 * 2**20))


@pytest.fixture(scope="module")
def page_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    data = make_folder(tmp / "d", classes=2, per_class=8)
    run = tk.fit(data, strategy="finetune", name="[click](javascript:alert(1))",
                 **dict(FAST, epochs=1, output=str(tmp / "runs"), cache_dir=str(tmp / "c")))
    return Path(run.path)


def call(url: str, data: list) -> tuple[str, str]:
    """The page's predict endpoint as a browser (or an attacker) calls it: (event, payload) of its answer."""
    r = httpx.post(f"{url}/gradio_api/call/predict", json={"data": data}, timeout=30)
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    event, payload = "", ""
    with httpx.stream("GET", f"{url}/gradio_api/call/predict/{event_id}", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                payload = line.split(":", 1)[1].strip()
                if event in ("complete", "error"):
                    break
    return event, payload


def file_data(path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def upload(url: str, name: str, data: bytes):
    return httpx.post(f"{url}/gradio_api/upload", files={"files": (name, data, "application/octet-stream")},
                      timeout=60)


def test_the_page_reads_no_file_it_was_not_sent(page_run, tmp_path):
    token = f"SECRET-TOKEN-{uuid.uuid4().hex}"  # this run's own: a copy left by any other run cannot match it
    secret = tmp_path / "secret.txt"
    secret.write_text(token)
    link_dir = Path(__import__("gradio.utils", fromlist=["x"]).get_upload_folder())
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / f"tk-test-link-{os.getpid()}.png"
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    attempts = [secret, "/etc/passwd", page_run / "model.json", page_run / "config.yaml",
                f"{link_dir}/../../{secret.relative_to('/')}", link]
    try:
        with served(page_run) as url:
            for path in attempts:
                event, payload = call(url, [file_data(path)])
                assert event == "error", (path, event, payload)
                assert token not in payload and "root:" not in payload
                # nothing of it reached a place the file route serves
                for where in (str(path), str(Path(str(path)).resolve())):
                    r = httpx.get(f"{url}/gradio_api/file={where}", timeout=10)
                    assert r.status_code in (403, 404), (where, r.status_code)
                    assert token not in r.text and "root:" not in r.text
                cached = [p for p in Path(link_dir).rglob("*") if p.is_file() and not p.is_symlink()
                          and token in p.read_text(errors="ignore")]
                assert not cached, cached
            # an uploaded photo is read, and answered
            up = upload(url, "photo.png", png_bytes(Image.new("RGB", (30, 30), "red")))
            assert up.status_code == 200, up.text
            event, payload = call(url, [file_data(up.json()[0])])
            assert event == "complete", payload
            assert "class" in payload
    finally:
        link.unlink(missing_ok=True)


def test_the_page_keeps_the_api_limits_and_decoder(page_run):
    with served(page_run) as url:
        big = upload(url, "big.png", os.urandom(3 * 2**20))  # over the 2 MiB this server allows
        assert big.status_code in (400, 413), big.status_code
        buf = io.BytesIO()
        Image.new("1", (11000, 11000)).save(buf, "PNG")  # 121 Mpx in a small file: refused from the header
        up = upload(url, "bomb.png", buf.getvalue())
        assert up.status_code == 200
        t0 = time.perf_counter()
        event, payload = call(url, [file_data(up.json()[0])])
        assert event == "error" and time.perf_counter() - t0 < 5
        r = httpx.post(f"{url}/predict", files={"file": ("bomb.png", buf.getvalue(), "image/png")}, timeout=30)
        assert r.status_code == 400 and "decompression-bomb" in r.json()["detail"]


def _odd_images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), "RGBA")
    grey16 = Image.fromarray(rng.integers(0, 65535, (40, 40), dtype=np.uint16))
    cmyk = Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), "CMYK")
    return {"rgba.png": png_bytes(rgba), "grey16.png": png_bytes(grey16), "cmyk.jpg": png_bytes(cmyk, "JPEG")}


def test_the_page_and_the_api_give_the_same_answer(page_run):
    with served(page_run) as url:
        for name, data in _odd_images().items():
            api = httpx.post(f"{url}/predict", files={"file": (name, data, "application/octet-stream")}, timeout=30)
            assert api.status_code == 200, api.text
            up = upload(url, name, data)
            event, payload = call(url, [file_data(up.json()[0])])
            assert event == "complete", payload
            shown = json.loads(payload)[0]  # the label component's value: {label, confidences}
            page = {c["label"]: c["confidence"] for c in shown["confidences"]}
            for entry in api.json()["topk"]:
                assert abs(page[entry["label"]] - entry["probability"]) < 1e-4, (name, page, api.json())


def test_a_run_name_is_text_on_the_page(page_run):
    with served(page_run) as url:
        config = httpx.get(f"{url}/config", timeout=30).text
        assert "[click](javascript:alert(1))" in config  # shown, as the characters it is
        assert 'href=\\"javascript:' not in config and "href='javascript:" not in config
        components = json.loads(config)["components"]
        assert not any(c.get("type") == "markdown" and "javascript:" in json.dumps(c) for c in components)
