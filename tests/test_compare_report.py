from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

import transferkit as tk
from transferkit.compare import compare

from conftest import FAST, make_folder


@pytest.fixture
def easy_data(tmp_path):
    return make_folder(tmp_path / "easy", classes=3, per_class=24, seed=1)


def test_negative_transfer_fires_for_a_useless_backbone(easy_data, tmp_path):
    """A backbone with all-zero weights gives constant features: probing it must lose to scratch."""
    import timm
    from safetensors.torch import save_file

    zero = {k: torch.zeros_like(v) for k, v in timm.create_model("test_efficientnet", num_classes=0).state_dict().items()}
    save_file(zero, str(tmp_path / "zero.safetensors"))
    kw = dict(FAST, backbone=f"file:{tmp_path / 'zero.safetensors'}", arch="test_efficientnet", epochs=6,
              lr=1e-2, cache_dir=str(tmp_path / "cache"))
    result = compare(str(easy_data), ["scratch", "linear-probe"], seeds=2, output=tmp_path / "cmp", name="c", **kw)
    rows = {r["strategy"]: r for r in result["rows"]}
    assert rows["linear-probe"]["accuracy_mean"] < rows["scratch"]["accuracy_mean"]
    assert any(w.startswith("NEGATIVE TRANSFER: linear-probe") for w in result["warnings"])
    saved = json.loads((tmp_path / "cmp" / "c" / "compare.json").read_text())
    assert saved["warnings"] == result["warnings"]
    assert (tmp_path / "cmp" / "c" / "report.html").is_file()


def test_no_warning_when_transfer_clearly_helps(easy_data, tmp_path):
    """Scratch starved of epochs and lr vs a probe of features that separate the classes: silent."""
    kw = dict(FAST, epochs=1, cache_dir=str(tmp_path / "cache"))
    result = compare(str(easy_data), ["scratch", "linear-probe"], seeds=2, output=tmp_path / "cmp", name="c",
                     **dict(kw, lr=1e-6))
    rows = {r["strategy"]: r for r in result["rows"]}
    assert rows["linear-probe"]["gain"]["low"] > 0
    assert set(rows["linear-probe"]["gains"]) == {"accuracy", "macro_f1"}
    test = rows["linear-probe"]["gain"]["mcnemar"]
    assert len(test["per_seed_p"]) == 2 and test["pooled"]["only_a"] > test["pooled"]["only_b"]
    assert result["warnings"] == []


def test_run_report_renders_in_chromium(easy_data, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    run = tk.fit(easy_data, strategy="finetune", **dict(FAST, output=str(tmp_path / "runs"),
                                                         cache_dir=str(tmp_path / "cache")))
    page = (run.path / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3  # per-class F1, confusion matrix, learning curves
    assert "http://" not in page and "https://" not in page  # opens offline
    assert "Resolved config" in page and "strategy: finetune" in page
    if chromium is None:
        pytest.skip("chromium not installed (CI installs Debian's chromium)")
    # Decode every image in the real browser: a broken image has naturalWidth 0.
    probe = run.path / "probe.html"
    probe.write_text(page.replace("</body>", "<script>window.onload=()=>{const i=[...document.images];"
                                  "document.title='IMAGES '+i.length+' BROKEN '+i.filter(x=>!x.naturalWidth).length}"
                                  "</script></body>"))
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
                          "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    title = res.stdout.split("<title>")[1].split("</title>")[0]
    n_images, n_broken = int(title.split()[1]), int(title.split()[3])
    assert n_images >= 3 and n_broken == 0, title


def test_resumed_comparison_reuses_finished_runs_and_adds_seeds(easy_data, tmp_path):
    from transferkit.errors import ConfigError

    kw = dict(FAST, epochs=1, cache_dir=str(tmp_path / "cache"))
    first = compare(str(easy_data), ["scratch", "linear-probe"], seeds=1, output=tmp_path / "cmp", name="c", **kw)
    weights = tmp_path / "cmp" / "c" / "runs" / "scratch-seed0" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    more = compare(str(easy_data), ["scratch", "linear-probe"], seeds=2, output=tmp_path / "cmp", name="c",
                   resume=True, **kw)
    assert weights.stat().st_mtime_ns == stamp  # seed 0 was read back, not trained again
    rows, before = {r["strategy"]: r for r in more["rows"]}, {r["strategy"]: r for r in first["rows"]}
    assert more["seeds"] == 2 and len(rows["scratch"]["runs"]) == 2
    assert rows["scratch"]["accuracy"][0] == before["scratch"]["accuracy"][0]
    with pytest.raises(ConfigError, match="other settings"):
        compare(str(easy_data), ["scratch"], seeds=1, output=tmp_path / "cmp", name="c", resume=True,
                **dict(kw, epochs=2))
    with pytest.raises(ConfigError, match="already exists"):
        compare(str(easy_data), ["scratch"], seeds=1, output=tmp_path / "cmp", name="c", **kw)
    stub = tmp_path / "cmp" / "c" / "runs" / "scratch-seed2"  # a run killed before its first checkpoint
    stub.mkdir()
    (stub / "train.log").write_text("started\n")
    again = compare(str(easy_data), ["scratch"], seeds=3, output=tmp_path / "cmp", name="c", resume=True, **kw)
    assert len({r["strategy"]: r for r in again["rows"]}["scratch"]["runs"]) == 3 and (stub / "metrics.json").is_file()
