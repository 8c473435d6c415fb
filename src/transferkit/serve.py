"""HTTP serving of a finished run: FastAPI, validated uploads, batched inference."""


import asyncio
import html
import importlib.util
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .app import build_demo, example_inputs
from .errors import DataError, TransferkitError
from .features import to_device
from .predict import Predictor

log = logging.getLogger("transferkit")

UPLOAD_PAGE = """<!doctype html><html lang=en><head><meta charset=utf-8><title>transferkit · {name}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:640px;margin:3rem auto;padding:0 1rem}}
#out{{margin-top:1rem;white-space:pre}}</style></head><body><h1>{name}</h1>
<p>{n} classes: {labels}</p><form id=f><input type=file name=file accept="{accept}" required>
<button>Predict</button></form><div id=out></div><p><a href="/docs">API docs</a></p>
<script src="/app.js"></script></body></html>"""
APP_JS = """const f=document.getElementById('f'),out=document.getElementById('out');
f.onsubmit=async e=>{e.preventDefault();const r=await fetch('/predict',{method:'POST',body:new FormData(f)});
out.textContent=JSON.stringify(await r.json(),null,1)};"""
# Our pages load nothing from elsewhere and run no inline script: whatever a label holds, it cannot run.
CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
QUEUE_PER_BATCH = 8  # requests waiting beyond max_batch × this are refused (503) instead of piling up


def page_file(value, uploads: list[Path], examples: list[Path]) -> Path:
    """The demo page's file input, only if the page received it: a file inside Gradio's upload folder (symlinks
    resolved first) or one of the run's own example inputs. Any other path — a server file, the run folder, a
    path with ``..``, a symlink out of the folder — is refused before it is read."""
    if not value:
        raise DataError("Nothing to predict", "a file uploaded through the page")
    path = Path(str(value)).resolve()
    if path in examples or any(path.is_relative_to(root) for root in uploads):
        return path
    raise DataError("The page reads only files uploaded through it", "a file uploaded through the page",
                    "Upload the file with the page's input, or send it to /predict")


class Batcher:
    """Collect concurrent requests into batches of up to ``max_batch`` (waiting at most ``max_wait_ms``)."""

    def __init__(self, predictor: Predictor, max_batch: int = 16, max_wait_ms: float = 5.0):
        self.predictor = predictor
        self.model = predictor.fast_model()  # BatchNorm folded, channels-last: built once, before serving
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_batch * QUEUE_PER_BATCH)

    async def submit(self, x: Any) -> np.ndarray:
        """The model's output for ``x``; ``asyncio.QueueFull`` when too many requests are waiting."""
        fut = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((x, fut))
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
            except Exception:  # noqa: BLE001 - one request's input must not fail its neighbours: each alone
                for x, fut in items:
                    try:
                        p = (await loop.run_in_executor(None, self._infer, [x]))[0]
                        if not fut.done():
                            fut.set_result(p)
                    except Exception as exc:  # noqa: BLE001 - answered to that request alone
                        if not fut.done():
                            fut.set_exception(exc)

    def _infer(self, xs: list) -> np.ndarray:
        pred = self.predictor
        batch = pred.inputs.collate(pred.model.backbone, xs)
        with torch.inference_mode():
            outputs = pred.task.run_batch(self.model, to_device(batch, pred.device,
                                                                 channels_last=pred.modality.channels_last(None)))
        return pred.task.per_item(outputs)


class Service:
    """What every route of a served run shares: the loaded run, the batcher, the limits, the one decoder and the
    files the demo page may read (its uploads and the run's examples)."""

    def __init__(self, run: str | Path, max_batch: int, max_wait_ms: float, max_bytes: int):
        self.run, self.max_bytes = Path(run), max_bytes
        self.predictor = Predictor(run)
        self.modality = self.predictor.modality
        self.batcher = Batcher(self.predictor, max_batch, max_wait_ms)
        self.examples = [Path(e).resolve() for e in example_inputs(self.run, self.modality)] \
            if self.modality.inputs_are_files else []
        self.uploads: list[Path] = []  # Gradio's upload folder, once the page is mounted

    def description(self) -> str:
        p, m = self.predictor, self.modality
        return (f"{p.task.name} on {m.name} inputs; {len(p.labels)} labels. Limits, the same on every route (this API, "
                f"the upload form, the demo page): a request body of at most {self.max_bytes / 2**20:g} MiB; images "
                f"under the decompression-bomb limit of {(Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} Mpx, refused from "
                f"the header; {m.name} inputs decoded by the run's own checked decoder. A segmentation mask comes back "
                "at the input's size, scaled back in bands of rows (about 12 bytes per input pixel at the peak: a "
                "64-Mpx photo takes under 1 GB, bench/serve_memory.py).")

    def decode(self, payload):
        """Decode one request and check it fits the model (a clip longer than its window …): one request's problem
        is answered to it alone, before it joins a batch."""
        x = self.modality.decode_request(payload, self.predictor.transform)
        self.predictor.task.check_request(x, self.predictor.meta["data_config"])
        return x

    def answer(self, outputs: np.ndarray, topk: int = 3) -> dict:
        d = self.predictor.task.decode([outputs], self.predictor.labels, topk)[0]
        if "topk" in d:
            d["topk"] = [{"label": lab, "probability": p} for lab, p in d["topk"]]
        return d

    async def payload(self, request):
        """The request's input as the modality reads it, within the size limit and of the right type."""
        from fastapi import HTTPException  # optional (serve extra)

        m, limit = self.modality, self.max_bytes
        too_big = HTTPException(413, f"Upload larger than {limit // 2**20} MiB; send a smaller file")
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            raise HTTPException(400, "Content-Length is not a number") from None
        if declared > limit:
            raise too_big
        chunks, size = [], 0  # read while counting: a chunked upload has no Content-Length
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        request._body = b"".join(chunks)  # Starlette parses JSON and forms from this
        ctype = request.headers.get("content-type", "")
        if m.request_body == "json":
            if not ctype.startswith("application/json"):
                raise HTTPException(415, f"Send {m.request_help}")
            try:
                return await request.json()
            except Exception:
                raise HTTPException(400, f"Body is not valid JSON; send {m.request_help}") from None
        if not ctype.startswith("multipart/form-data"):
            raise HTTPException(415, f"Send {m.request_help}")
        upload = (await request.form()).get("file")
        if upload is None or not hasattr(upload, "read"):
            raise HTTPException(422, f"No file field in the form; send {m.request_help}")
        utype = upload.content_type or ""
        if utype and not utype.startswith(f"{m.name}/") and utype != "application/octet-stream":
            raise HTTPException(415, f"Content type {utype} is not {m.name}; send {m.request_help}")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise too_big
        if not data:
            raise HTTPException(400, f"Empty upload; send {m.request_help}")
        return data

    async def predict(self, request) -> dict:
        """``POST /predict``: the decoded input through the batcher; every failure is this request's answer."""
        from fastapi import HTTPException  # optional (serve extra)

        payload = await self.payload(request)
        try:  # decoding is CPU work: off the event loop, so /health and other clients keep their answers
            x = await asyncio.get_running_loop().run_in_executor(None, self.decode, payload)
        except DataError as exc:
            raise HTTPException(422 if self.modality.request_body == "json" else 400, str(exc)) from None
        try:
            return self.answer(await self.batcher.submit(x))
        except asyncio.QueueFull:
            raise HTTPException(503, "The server is busy; retry shortly") from None
        except TransferkitError as exc:  # this request's input, found wrong by the model's own checks
            raise HTTPException(422, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - logged with its traceback; the client gets one line
            log.exception("prediction failed for one request")
            raise HTTPException(500, f"The model failed on this input ({type(exc).__name__}); see the server log") \
                from None

    async def demo_predict(self, value) -> dict:
        """The demo page's input through the same checks, decoding, batching and model as /predict."""
        loop = asyncio.get_running_loop()
        if self.modality.inputs_are_files:
            value = page_file(value, self.uploads, self.examples)
        payload = await loop.run_in_executor(None, self.modality.app_payload, value, self.max_bytes)
        x = await loop.run_in_executor(None, self.decode, payload)
        try:
            out = await self.batcher.submit(x)
        except asyncio.QueueFull:
            raise DataError("The server is busy", "a retry shortly") from None
        return self.predictor.task.decode([out], self.predictor.labels, 5)[0]

    def mount_demo(self, app):
        """The Gradio page at ``/``. ``mount_gradio_app`` leaves out what ``launch()`` sets up: the upload size
        limit, and Gradio's check that a file named in a request was uploaded (it runs only once the Blocks "has
        launched"; without it any path on the server was copied into Gradio's cache and served back)."""
        import gradio as gr  # optional (app extra)
        from gradio.utils import get_upload_folder  # optional (app extra)

        self.uploads.append(Path(get_upload_folder()).resolve())
        demo = build_demo(self.predictor, self.run, self.demo_predict)
        app = gr.mount_gradio_app(app, demo, path="/", max_file_size=self.max_bytes, show_error=True,
                                  allowed_paths=[str(e) for e in self.examples])
        demo.has_launched = True
        return app


def create_app(run: str | Path, max_batch: int = 16, max_wait_ms: float = 5.0, max_bytes: int = 10 * 2**20,
               ui: bool | None = None):
    """The FastAPI app for a run folder (``uvicorn`` serves it; tests call it over real HTTP). ``ui``: the Gradio
    demo page at ``/`` (None: when gradio is installed; else the plain upload page)."""
    from fastapi import FastAPI, Request  # optional (serve extra)
    from fastapi.responses import HTMLResponse, Response

    service = Service(run, max_batch, max_wait_ms, max_bytes)
    predictor, modality, name = service.predictor, service.modality, Path(run).name

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(service.batcher.run())
        yield
        task.cancel()

    app = FastAPI(title=f"transferkit · {name}", lifespan=lifespan, description=service.description())

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "run": name, "task": predictor.task.name, "modality": modality.name,
                "classes": len(predictor.labels)}

    @app.get("/labels")
    def labels() -> list[str]:
        return predictor.labels

    if ui is None:
        ui = importlib.util.find_spec("gradio") is not None

    @app.get("/upload" if ui else "/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        esc = html.escape
        page = UPLOAD_PAGE.format(name=esc(name), n=len(predictor.labels),
                                  labels=esc(", ".join(predictor.labels[:20])), accept=f"{modality.name}/*")
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})

    @app.get("/app.js", include_in_schema=False)
    def app_js() -> Response:
        return Response(APP_JS, media_type="text/javascript", headers={"X-Content-Type-Options": "nosniff"})

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        return await service.predict(request)

    return service.mount_demo(app) if ui else app
