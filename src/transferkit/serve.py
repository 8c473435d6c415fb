"""HTTP serving of a finished run: FastAPI, validated uploads, batched inference."""


import asyncio
import io
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .features import to_device
from .predict import Predictor

log = logging.getLogger("transferkit")

UPLOAD_PAGE = """<!doctype html><html lang=en><head><meta charset=utf-8><title>transferkit · {name}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:640px;margin:3rem auto;padding:0 1rem}}
#out{{margin-top:1rem;white-space:pre}}</style></head><body><h1>{name}</h1>
<p>{n} classes: {labels}</p><form id=f><input type=file name=file accept="image/*" required>
<button>Predict</button></form><div id=out></div><p><a href="/docs">API docs</a></p>
<script>f.onsubmit=async e=>{{e.preventDefault();const r=await fetch('/predict',{{method:'POST',body:new FormData(f)}});
out.textContent=JSON.stringify(await r.json(),null,1)}}</script></body></html>"""


class Batcher:
    """Collect concurrent requests into batches of up to ``max_batch`` (waiting at most ``max_wait_ms``)."""

    def __init__(self, predictor: Predictor, max_batch: int = 16, max_wait_ms: float = 5.0):
        self.predictor = predictor
        self.model = predictor.fast_model()  # BatchNorm folded, channels-last: built once, before serving
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue()

    async def submit(self, x: Any) -> np.ndarray:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((x, fut))
        return await fut

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            try:
                probs = await loop.run_in_executor(None, self._infer, [x for x, _ in items])
                for (_, fut), p in zip(items, probs):
                    if not fut.done():
                        fut.set_result(p)
            except Exception as exc:  # never let one bad batch stop the server
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)

    def _infer(self, xs: list) -> np.ndarray:
        pred = self.predictor
        with torch.inference_mode():
            if pred.modality == "text":
                ds = pred._dataset(xs)
                batch, _ = ds.collate_fn([ds[i] for i in range(len(ds))])
                logits = pred.model({k: v.to(pred.device) for k, v in batch.items()})
            else:
                logits = self.model(to_device(torch.stack(xs), pred.device, channels_last=True))
        return logits.float().softmax(1).cpu().numpy()


def create_app(run: str | Path, max_batch: int = 16, max_wait_ms: float = 5.0, max_bytes: int = 10 * 2**20):
    """The FastAPI app for a run folder (``uvicorn`` serves it; tests call it over real HTTP)."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse
    from PIL import Image, UnidentifiedImageError

    from .data import to_rgb

    predictor = Predictor(run)
    batcher = Batcher(predictor, max_batch, max_wait_ms)

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    name = Path(run).name
    app = FastAPI(title=f"transferkit · {name}", lifespan=lifespan,
                  description=f"Classifies {predictor.modality} inputs into {len(predictor.labels)} classes.")

    def answer(p: np.ndarray, topk: int = 3) -> dict:
        order = np.argsort(-p)[:topk]
        return {"label": predictor.labels[order[0]], "probability": float(p[order[0]]),
                "topk": [{"label": predictor.labels[i], "probability": float(p[i])} for i in order]}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "run": name, "modality": predictor.modality, "classes": len(predictor.labels)}

    @app.get("/labels")
    def labels() -> list[str]:
        return predictor.labels

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return UPLOAD_PAGE.format(name=name, n=len(predictor.labels), labels=", ".join(predictor.labels[:20]))

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        ctype = request.headers.get("content-type", "")
        if int(request.headers.get("content-length") or 0) > max_bytes:
            raise HTTPException(413, f"Upload larger than {max_bytes // 2**20} MiB; send a smaller image")
        if predictor.modality == "text":
            if not ctype.startswith("application/json"):
                raise HTTPException(415, 'Send JSON {"text": "..."} with Content-Type application/json')
            try:
                body = await request.json()
            except Exception:
                raise HTTPException(400, 'Body is not valid JSON; expected {"text": "..."}') from None
            text = body.get("text") if isinstance(body, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise HTTPException(422, 'Expected {"text": "<non-empty string>"}')
            return answer(await batcher.submit(text))
        if not ctype.startswith("multipart/form-data"):
            raise HTTPException(415, "Send the image as multipart/form-data in a field named 'file'")
        form = await request.form()
        upload = form.get("file")
        if upload is None or not hasattr(upload, "read"):
            raise HTTPException(422, "No file field in the form; send the image as field 'file'")
        if upload.content_type and not upload.content_type.startswith("image/") and upload.content_type != "application/octet-stream":
            raise HTTPException(415, f"Content type {upload.content_type} is not an image; send a JPEG/PNG/WebP file")
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, f"Upload larger than {max_bytes // 2**20} MiB; send a smaller image")
        if not data:
            raise HTTPException(400, "Empty upload; send an image file")
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                rgb = to_rgb(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise HTTPException(400, f"Cannot decode the upload as an image ({type(exc).__name__}); send a JPEG/PNG/WebP file") from None
        return answer(await batcher.submit(predictor.transform(rgb)))

    return app
