"""The demo page in a real browser (headless Chromium through Playwright): for every task, load the page a run's
``serve`` mounts at ``/``, take an example from the run's evaluation split, press Predict and read the result from
the page; the JSON API answers beside it."""

from __future__ import annotations

import os
import re
import shutil

import pytest

import transferkit as tk

from conftest import served_app, AUDIO_FAST, DETECT, FAST, SEG_CLASSES, SEGMENT, BOX_CLASSES, make_audio_folder, make_boxes, \
    make_folder, make_masks

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _served(run):
    """``serve``'s app for ``run`` on a free local port (uvicorn in a thread); yields its URL."""
    from transferkit.serve import create_app

    return served_app(create_app(run))


def _screenshot(page, kind: str) -> None:
    """With TRANSFERKIT_SCREENSHOTS=DIR, the page as the test left it (for a person to look at)."""
    folder = os.environ.get("TRANSFERKIT_SCREENSHOTS")
    if folder:
        page.screenshot(path=os.path.join(folder, f"app-{kind}.png"), full_page=True)


def _tiny_ctc_corpus(tmp):
    import csv

    from reliability.asr_cases import _tiny_encoder, _tone

    root = tmp / "speech"
    root.mkdir()
    rows = []
    for i in range(8):
        _tone(root / f"c{i}.wav", freq=300 + 60 * i)
        rows.append((f"c{i}.wav", "ab ba" if i % 2 else "abb", "test" if i >= 6 else "train"))
    with open(root / "t.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("file", "transcript", "split"), *rows])
    return root / "t.csv", _tiny_encoder(tmp)


def _run(kind: str, tmp):
    out = dict(output=str(tmp / "runs"), cache_dir=str(tmp / "c"))
    if kind == "image":
        return tk.fit(make_folder(tmp / "d", classes=2, per_class=8), strategy="finetune", **FAST, **out), \
            r"class[01]"
    if kind == "audio":
        return tk.fit(make_audio_folder(tmp / "d", classes=2, per_class=6), strategy="linear-probe", **AUDIO_FAST,
                      **out), r"class[01]"
    if kind == "detect":
        return tk.fit(make_boxes(tmp / "d", "voc", n=10), **DETECT, **out), None  # the drawn photo (boxes or not)
    if kind == "segment":
        return tk.fit(make_masks(tmp / "d", n=10), **SEGMENT, **out), r"(" + "|".join(SEG_CLASSES) + r") \d+%"
    data, encoder = _tiny_ctc_corpus(tmp)
    return tk.fit(str(data), task="asr", backbone=encoder, epochs=1, workers=0, batch_size=4, **out), None


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI installs Debian's chromium)")
@pytest.mark.parametrize("kind", ["image", "audio", "detect", "segment", "asr"])
def test_demo_page_predicts_in_a_browser(tmp_path, kind):
    run, expected = _run(kind, tmp_path)
    with _served(run.path) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.locator("button.gallery-item").first.click(timeout=60_000)
        page.wait_for_timeout(1500)  # the example is loaded into the input
        page.get_by_role("button", name="Predict").click()
        output = page.locator("#tk-output")
        if kind == "asr":  # a transcript in a text box: its value, once written
            page.wait_for_function("document.querySelector('#tk-output textarea').value.length > 0",
                                   timeout=60_000)
            assert re.fullmatch(r"[a-z ]+|\(nothing heard\)", output.locator("textarea").input_value())
        elif kind == "detect":  # the photo drawn back, with its boxes' labels where any scored high enough
            page.wait_for_selector("#tk-output img", timeout=60_000)
            labels = output.inner_text()
            assert not re.search(r"\d\.\d\d", labels) or re.search("|".join(BOX_CLASSES), labels)
        else:
            page.wait_for_function(f"new RegExp({expected!r}).test(document.querySelector('#tk-output').innerText)",
                                   timeout=60_000)
        assert "Error" not in output.inner_text()
        _screenshot(page, kind)
        browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI installs Debian's chromium)")
def test_text_demo_page_predicts_in_a_browser(tmp_path, tiny_bert, texts):
    run = tk.fit(str(texts), backbone=f"hf:{tiny_bert}", strategy="linear-probe",
                 workers=0, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"))
    with _served(run.path) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.locator("#tk-input textarea").fill("win free prize cash now claim")
        page.get_by_role("button", name="Predict").click()
        page.wait_for_function("/spam|ham/.test(document.querySelector('#tk-output').innerText)", timeout=60_000)
        _screenshot(page, "text")
        browser.close()
