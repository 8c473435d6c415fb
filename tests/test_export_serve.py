from __future__ import annotations

import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit as tk

from conftest import FAST, make_folder, served_app, shared_path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    data = make_folder(tmp / "d", classes=3, per_class=10)
    return tk.fit(data, strategy="finetune", **dict(FAST, epochs=1, output=str(tmp / "runs"))), data


def test_serving_model_is_folded_channels_last_and_gives_the_same_logits(tiny_run):
    import torch

    run, data = tiny_run
    pred = tk.load(run.path)
    fast = pred.fast_model()
    assert fast is not pred.model and fast is pred.fast_model()  # built once
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in pred.model.modules())  # the loaded model untouched
    x = torch.stack([pred.transform(Image.open(p).convert("RGB")) for p in sorted((data / "class1").iterdir())])
    with torch.inference_mode():
        want = pred.model(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity(tiny_run, fmt):
    pytest.importorskip("onnxruntime")
    run, data = tiny_run
    res = tk_export(run.path, fmt, check=data / "class1")
    p = res["parity"]
    assert p["n"] == 10 and p["top1_agreement"] == 1.0 and p["max_abs_diff"] < 1e-4
    if fmt == "onnx":
        import onnx
        import onnxruntime as ort

        meta = {m.key: json.loads(m.value) for m in onnx.load(res["path"]).metadata_props}
        assert meta["labels"] == ["class0", "class1", "class2"] and meta["input_size"] == [3, 32, 32]
        sess = ort.InferenceSession(res["path"])
        out = sess.run(None, {"input": np.zeros((5, 3, 32, 32), np.float32)})[0]  # dynamic batch
        assert out.shape == (5, 3)


def tk_export(*a, **k):
    from transferkit.export import export

    return export(*a, **k)


@pytest.mark.slow
def test_onnx_parity_on_real_photos_with_packaged_lite0(tmp_path):
    pytest.importorskip("onnxruntime")
    val = shared_path("data", "hymenoptera", "val")
    root = tmp_path / "few"
    for cls in ("ants", "bees"):
        for split, n in (("train", 4), ("val", 2)):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((val.parent / split / cls).glob("*.jpg"))[:n]:
                (root / split / cls / f.name).symlink_to(f)
    run = tk.fit(root, strategy="linear-probe", image_size=160, output=str(tmp_path / "r"),
                 cache_dir=str(tmp_path / "c"))
    res = tk_export(run.path, "onnx", check=val / "bees", max_check=6)
    assert res["parity"]["top1_agreement"] == 1.0 and res["parity"]["max_abs_diff"] < 1e-3


@pytest.fixture(scope="module")
def server(tiny_run):
    pytest.importorskip("uvicorn")
    from transferkit.serve import create_app

    run, data = tiny_run
    with served_app(create_app(run.path, max_batch=8, ui=False)) as url:
        yield url, data


def _png(color="red", size=(20, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_server_answers_and_rejects_bad_uploads(server):
    import httpx

    url, data = server
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert httpx.get(f"{url}/labels").json() == ["class0", "class1", "class2"]
    assert "<form" in httpx.get(f"{url}/").text and httpx.get(f"{url}/openapi.json").status_code == 200
    img = (data / "class0" / "0.png").read_bytes()
    r = httpx.post(f"{url}/predict", files={"file": ("a.png", img, "image/png")})
    assert r.status_code == 200 and r.json()["label"] in ("class0", "class1", "class2")
    assert abs(sum(t["probability"] for t in r.json()["topk"]) - 1) < 1e-4
    bad = [
        ({"file": ("a.txt", b"hello", "text/plain")}, 415),
        ({"file": ("a.png", b"not really a png", "image/png")}, 400),
        ({"file": ("a.png", b"", "image/png")}, 400),
        ({"file": ("a.png", _png()[:40], "image/png")}, 400),  # truncated
        ({"other": ("a.png", img, "image/png")}, 422),
    ]
    for files, code in bad:
        r = httpx.post(f"{url}/predict", files=files)
        assert r.status_code == code, (files, r.text)
        assert r.json()["detail"]
    assert httpx.post(f"{url}/predict", json={"text": "hi"}).status_code == 415
    r = httpx.post(f"{url}/predict", files={"file": ("big.png", b"0" * (11 * 2**20), "image/png")})
    assert r.status_code == 413
    assert httpx.get(f"{url}/health").status_code == 200  # still up


def test_bounded_load_has_no_failures(server):
    import httpx
    from concurrent.futures import ThreadPoolExecutor

    url, data = server
    img = (data / "class1" / "0.png").read_bytes()

    def one(_):
        t0 = time.perf_counter()
        r = httpx.post(f"{url}/predict", files={"file": ("a.png", img, "image/png")}, timeout=60)
        return r.status_code, time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(200)))
    wall = time.perf_counter() - t0
    codes = [c for c, _ in results]
    lat = np.array([t for _, t in results]) * 1000
    print(f"\n200 requests, 8 clients: {200 / wall:.0f} req/s, p50 {np.percentile(lat, 50):.0f} ms, "
          f"p95 {np.percentile(lat, 95):.0f} ms, p99 {np.percentile(lat, 99):.0f} ms")
    assert codes.count(200) == 200


def test_chunked_upload_is_refused_at_the_limit_while_health_answers(server):
    """A chunked body has no Content-Length: the server must answer 413 once the limit (10 MiB) is passed,
    without waiting for the rest, and keep answering /health meanwhile."""
    import httpx

    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    latencies = []
    done = threading.Event()

    def probe():
        while not done.is_set():
            t0 = time.perf_counter()
            assert httpx.get(f"{url}/health", timeout=5).status_code == 200
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)

    watcher = threading.Thread(target=probe)
    watcher.start()
    try:
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for _ in range(12):  # 12 MiB, and the body never ends: only a server that stops at the limit answers
                sock.sendall(b"100000\r\n" + b"0" * 2**20 + b"\r\n")
                time.sleep(0.02)
            sock.settimeout(10)
            status_line = sock.recv(4096).split(b"\r\n")[0]
    finally:
        done.set()
        watcher.join()
    assert b" 413 " in status_line, status_line
    assert latencies and max(latencies) < 0.1, max(latencies)


def test_every_html_page_escapes_labels(tmp_path):
    """Class names come from folder names and CSVs: on the upload page and in both reports they are text."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from transferkit.compare import compare
    from transferkit.serve import create_app

    evil = '<img src=x onerror="alert(1)">'
    root = make_folder(tmp_path / "d", classes=2, per_class=10)
    (root / "class1").rename(root / evil)
    result = compare(str(root), ["scratch", "linear-probe"], seeds=1, output=tmp_path / "cmp", name="c",
                     **dict(FAST, epochs=1, cache_dir=str(tmp_path / "cache")))
    pages = [(tmp_path / "cmp" / "c" / "report.html").read_text()]
    run = Path(result["rows"][1]["runs"][0])
    pages.append((run / "report.html").read_text())
    with TestClient(create_app(run, ui=False)) as client:  # the plain upload page (the demo page: tests/test_app.py)
        page = client.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text  # no inline script at all
        pages.append(page.text)
    assert all(evil not in text for text in pages)
    assert all("&lt;img src=x onerror=" in text for text in pages[1:])  # the pages that show labels


def test_serve_applies_the_image_safety_policy(server):
    import httpx

    url, _ = server
    buf = io.BytesIO()
    Image.new("1", (15000, 15000)).save(buf, "PNG")  # a decompression bomb: tiny file, 225 Mpx
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/predict", files={"file": ("bomb.png", buf.getvalue(), "image/png")}, timeout=30)
    assert r.status_code == 400 and "decompression-bomb" in r.json()["detail"]
    assert time.perf_counter() - t0 < 1.0  # refused from the header, not decoded
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    r = httpx.post(f"{url}/predict", files={"file": ("photo.jpg", eps, "image/jpeg")})
    assert r.status_code == 400 and "format other than" in r.json()["detail"]


def test_one_failing_input_fails_its_request_alone(tiny_run):
    """A batch in which one input breaks the model: the others are answered, the bad one gets its own error."""
    import asyncio

    import torch

    from transferkit.serve import Batcher

    run, data = tiny_run
    pred = tk.load(run.path)
    batcher = Batcher(pred, max_batch=8, max_wait_ms=50)
    good = pred.transform(Image.open(data / "class0" / "0.png").convert("RGB"))
    bad = torch.zeros(1, 32, 32)  # one channel: the batch cannot stack it, nor can the model read it alone

    async def main():
        worker = asyncio.create_task(batcher.run())
        results = await asyncio.gather(*(batcher.submit(x) for x in (good, bad, good, good)), return_exceptions=True)
        worker.cancel()
        return results

    results = asyncio.run(main())
    assert [isinstance(r, Exception) for r in results] == [False, True, False, False]
    np.testing.assert_allclose(results[0], results[2], rtol=1e-5)
