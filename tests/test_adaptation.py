"""Unsupervised domain adaptation: the target stream, feature-level methods folded into the head, the end-to-end
terms, AdaBN, resume, and compare against source only."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import transferkit as tk
from conftest import FAST, make_folder
from transferkit.adaptation import _losses
from transferkit.adaptation._feature_level import affine_map, fit_adapted_probe
from transferkit.adaptation._streams import PairedItems, reestimate_batchnorm
from transferkit.config import resolve_config
from transferkit.errors import TransferkitError
from transferkit.heads import TransferModel, build_head
from transferkit.tasks import get_task


def domains(tmp_path, target_per_class=6):
    source = make_folder(tmp_path / "source", classes=3, per_class=12)
    target = make_folder(tmp_path / "target", classes=3, per_class=target_per_class, seed=5)
    return source, target


def shifted_gaussians(n=300, dim=16, seed=0):
    """Two classes; the target is the source stretched per feature and moved: a source-only probe fails on it."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    xs = rng.normal(size=(n, dim)) + 3.0 * y[:, None] * np.eye(dim)[0]
    yt = rng.integers(0, 2, n)
    xt = (rng.normal(size=(n, dim)) + 3.0 * yt[:, None] * np.eye(dim)[0]) * np.linspace(1, 3, dim) + 4.5
    return xs.astype(np.float32), y, xt.astype(np.float32), yt


class _Features(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.num_features = dim

    def forward(self, x):
        return x


def probe_accuracy(method, xs, y, xt, yt):
    task = get_task("classify").for_run(resolve_config({}), None)
    model = TransferModel(_Features(xs.shape[1]), build_head("linear", xs.shape[1], 2))
    cfg = resolve_config({})
    if method == "none":
        task.fit_probe(model, xs, y, cfg)
    else:
        fit_adapted_probe(method, task, model, xs, y, xt, cfg)
    with torch.no_grad():
        return float((model.head(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean()), model


@pytest.mark.parametrize("method", ["coral", "sa", "ot"])
def test_feature_level_methods_recover_a_shifted_target_and_fold_into_one_linear_head(method):
    xs, y, xt, yt = shifted_gaussians()
    none, _ = probe_accuracy("none", xs, y, xt, yt)
    adapted, model = probe_accuracy(method, xs, y, xt, yt)
    assert none < 0.6, none  # the shift defeats the source-only probe
    assert adapted > 0.8, (none, adapted)
    assert isinstance(model.head[0], torch.nn.Linear) and model.head[0].in_features == xs.shape[1]


def test_affine_map_reads_an_affine_map_and_refuses_another():
    rng = np.random.default_rng(0)
    A, c = rng.normal(size=(5, 3)), rng.normal(size=3)
    got_A, got_c = affine_map(lambda z: z @ A + c, 5, rng.normal(size=(20, 5)))
    assert np.allclose(got_A, A) and np.allclose(got_c, c)
    with pytest.raises(RuntimeError, match="not affine"):
        affine_map(lambda z: np.tanh(z @ A), 5, rng.normal(size=(20, 5)))


def test_gradient_reversal_and_the_schedule():
    x = torch.ones(3, requires_grad=True)
    _losses._Reverse.apply(x, 0.5).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -0.5))
    assert _losses.ramp(0.0) == 0.0 and 0.99 < _losses.ramp(1.0) < 1.0 and _losses.ramp(0.5) > 0.9


def test_domain_discriminator_learns_to_tell_domains_and_its_step_count_advances():
    torch.manual_seed(0)
    for conditional in (False, True):
        term = _losses.make_term("cdan" if conditional else "dann", 8, 3, total_steps=200)
        opt = torch.optim.Adam(term.parameters(), lr=1e-3)
        fs, ft = torch.randn(32, 8) + 2, torch.randn(32, 8) - 2
        ls, lt = torch.randn(32, 3), torch.randn(32, 3)
        first = term(fs, ft, ls, lt).item()
        for _ in range(60):
            opt.zero_grad()
            loss = term(fs, ft, ls, lt)
            loss.backward()
            opt.step()
        assert loss.item() < first * 0.5, (conditional, first, loss.item())  # separable domains: it learns them
        assert term.step.item() == 61


def test_mcc_is_zero_for_confident_distinct_classes_and_high_for_confusion():
    mcc = _losses.make_term("mcc", 4, 3, 10)
    sharp = torch.eye(3).repeat(4, 1) * 50
    flat = torch.zeros(12, 3)
    assert mcc(None, None, None, sharp).item() < 1e-3
    assert mcc(None, None, None, flat).item() == pytest.approx(2 / 3, abs=1e-4)


def test_soft_neighbourhood_density_is_the_mean_entropy_of_soft_neighbours():
    """Two tight clusters of n/2 predictions: each input's neighbours are the n/2 - 1 others of its cluster, equally
    near, so SND = log(n/2 - 1); predictions spread out have fewer close neighbours and score lower."""
    from transferkit.evaluation import soft_neighbourhood_density

    two = np.r_[np.tile([0.99, 0.01], (10, 1)), np.tile([0.01, 0.99], (10, 1))]
    assert soft_neighbourhood_density(two) == pytest.approx(np.log(9), abs=1e-3)
    spread = np.stack([np.linspace(0.01, 0.99, 20), 1 - np.linspace(0.01, 0.99, 20)], 1)
    assert soft_neighbourhood_density(spread) < soft_neighbourhood_density(two)
    assert np.isnan(soft_neighbourhood_density(two[:1]))


def test_self_training_uses_only_confident_target_predictions():
    st = _losses.make_term("self-train", 4, 3, total_steps=1)
    st.step.fill_(1)  # the ramp at its end
    unsure = torch.zeros(8, 3, requires_grad=True)
    assert st(None, None, None, unsure).item() == 0.0
    sure = torch.tensor([[6.0, 0, 0]] * 8, requires_grad=True)
    loss = st(None, None, None, sure)
    assert loss.item() > 0
    loss.backward()
    assert sure.grad[:, 0].lt(0).all()  # pushed further towards its own arg-max


def test_paired_items_draw_targets_by_the_items_seed_and_collate_both_streams():
    src = [(torch.full((2,), float(i)), i % 2) for i in range(6)]
    tgt = [(torch.full((2,), 100.0 + j), -1) for j in range(4)]
    ds = PairedItems(src, tgt)

    def draw(i, seed):
        torch.manual_seed(seed)
        return ds[i]

    assert torch.equal(draw(3, 7)[0][1], draw(3, 7)[0][1])
    x, y = ds.collate_fn([ds[i] for i in range(4)])
    assert set(x) == {"source", "target"} and x["source"].shape == (4, 2) and x["target"].min() >= 100
    assert y.tolist() == [0, 1, 0, 1]


def test_adabn_replaces_running_statistics_with_the_targets():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).eval()
    data = [(torch.randn(8, 3, 5, 5) * 3 + 7, torch.zeros(8)) for _ in range(4)]
    n = reestimate_batchnorm(net, data, lambda x: x)
    with torch.no_grad():
        conv = torch.cat([net[0](x) for x, _ in data])
    assert n == 32
    assert torch.allclose(net[1].running_mean, conv.mean((0, 2, 3)), atol=1e-4)
    assert not net.training and net[1].momentum == 0.1


def test_an_adapted_run_scores_the_target_saves_a_plain_model_and_predicts(tmp_path):
    source, target = domains(tmp_path)
    run = tk.fit(source, target=str(target), adapt="dann", strategy="finetune", select="last",
                 **dict(FAST, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache")))
    a = run.metrics["adaptation"]
    assert run.metrics["selection"] == "final epoch (--select last)" and a["selection"].startswith("last epoch")
    assert a["method"] == "dann" and a["n_target"] == 18 and a["n_scored"] == 18 and 0 <= a["accuracy"] <= 1
    assert set(a["per_class"]) == {"class0", "class1", "class2"}
    with open(run.path / "target_predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 18 and a["accuracy"] == pytest.approx(np.mean([r["label"] == r["pred"] for r in rows]))
    from safetensors.torch import load_file

    assert not any(k.startswith("adapter") for k in load_file(run.path / "model.safetensors"))
    assert "adapt_loss" in run.history[0]
    maps = np.load(run.path / "adaptation_map.npz")
    assert maps["before"].shape == maps["after"].shape == (len(maps["domain"]), 2)
    assert "Domain adaptation" in (run.path / "report.html").read_text()
    preds = tk.load(run.path).predict([r["input"] for r in rows[:3]])
    assert [p["label"] for p in preds] == [r["pred"] for r in rows[:3]]


def test_feature_level_run_writes_a_head_that_reads_raw_target_features(tmp_path):
    source, target = domains(tmp_path)
    kw = dict(FAST, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), strategy="linear-probe")
    run = tk.fit(source, target=str(target), adapt="sa", **kw)
    with open(run.path / "target_predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    preds = tk.load(run.path).predict([r["input"] for r in rows])
    assert [p["label"] for p in preds] == [r["pred"] for r in rows]  # the saved model is the adapted one
    assert run.metrics["probe"]["adapter"] == "SubspaceAlignmentAdapter"


def test_adapt_auto_keeps_the_head_with_the_densest_target_predictions_without_reading_target_labels(tmp_path):
    source, target = domains(tmp_path)
    kw = dict(FAST, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), strategy="linear-probe")
    run = tk.fit(source, target=str(target), adapt="auto", **kw)
    a = run.metrics["adaptation"]
    snd = a["candidates_snd"]
    assert set(snd) <= {"none", "coral", "sa", "ot", "mcc"} and "none" in snd
    assert a["chosen"] == max(snd, key=snd.get) and a["snd"] == pytest.approx(snd[a["chosen"]], abs=1e-6)
    with open(run.path / "target_predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    preds = tk.load(run.path).predict([r["input"] for r in rows])
    assert [p["label"] for p in preds] == [r["pred"] for r in rows]  # the kept head is the saved model's
    unlabelled = tmp_path / "unlabelled"  # the same inputs without class folders: the same choice
    unlabelled.mkdir()
    for i, p in enumerate(sorted(target.rglob("*.png"))):
        (unlabelled / f"{i:03d}.png").write_bytes(p.read_bytes())
    again = tk.fit(source, target=str(unlabelled), adapt="auto", **kw).metrics["adaptation"]
    assert again["chosen"] == a["chosen"] and again["candidates_snd"] == pytest.approx(snd)


def test_an_interrupted_adapted_run_resumes_to_the_same_result(tmp_path):
    source, target = domains(tmp_path)
    kw = dict(FAST, epochs=3, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), target=str(target),
              adapt="cdan", strategy="finetune", checkpoint_every=0)
    full = tk.fit(source, name="full", **kw)

    def stop(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tk.fit(source, name="cut", on_epoch_end=stop, **kw)
    resumed = tk.fit(resume=tmp_path / "runs" / "cut")
    assert resumed.metrics["adaptation"]["accuracy"] == full.metrics["adaptation"]["accuracy"]
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in full.history])


def test_compare_adaptation_gains_over_source_only_and_an_oracle(tmp_path):
    from transferkit.adapt_compare import compare_adaptation

    source, target = domains(tmp_path, target_per_class=8)
    res = compare_adaptation(str(source), str(target), ["linear-probe"], ["none", "coral", "oracle"], seeds=1,
                             output=str(tmp_path / "cmp"), name="c", **{k: v for k, v in FAST.items() if k != "epochs"},
                             cache_dir=str(tmp_path / "cache"))
    rows = {r["strategy"]: r for r in res["rows"]}
    assert set(rows) == {"linear-probe + none", "linear-probe + coral", "linear-probe oracle"}
    assert "gain" not in rows["linear-probe + none"] and "gain" in rows["linear-probe + coral"]
    g = rows["linear-probe + coral"]["gain"]
    assert g["mean"] == pytest.approx(rows["linear-probe + coral"]["target_accuracy_mean"]
                                      - rows["linear-probe + none"]["target_accuracy_mean"])
    assert rows["linear-probe oracle"]["source_accuracy"] == []
    saved = json.loads((tmp_path / "cmp" / "c" / "compare.json").read_text())
    assert saved["n_eval"] == 24 and saved["oracle"]
    label_free = [r for r in saved["rows"] if "target_snd_mean" in r]  # every line but the oracle
    assert len(label_free) == 2 and saved["recommended"]["strategy"] == max(
        label_free, key=lambda r: r["target_snd_mean"])["strategy"]
    with pytest.raises(TransferkitError, match="can run --adapt dann"):
        compare_adaptation(str(source), str(target), ["linear-probe"], ["dann"], output=str(tmp_path / "cmp"))


def test_text_adapts_end_to_end_from_a_table_of_unlabelled_texts(tmp_path, texts, tiny_bert):
    target = tmp_path / "target.csv"
    target.write_text("text\n" + "\n".join(f"claim your free cash prize {i}" if i % 2 else f"lunch then? {i}"
                                           for i in range(10)) + "\n")
    run = tk.fit(texts, target=str(target), adapt="mcc", strategy="finetune", backbone=f"hf:{tiny_bert}",
                 epochs=1, batch_size=8, workers=0, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))
    a = run.metrics["adaptation"]
    assert a["n_target"] == 10 and a["n_scored"] == 0 and "accuracy" not in a  # unlabelled: adapted, not scored
    assert "adapt_loss" in run.history[0]


def test_audio_adapts_at_feature_level(tmp_path):
    from conftest import AUDIO_FAST, make_audio_folder

    pytest.importorskip("soundfile")
    source = make_audio_folder(tmp_path / "source", classes=2, per_class=9)
    target = make_audio_folder(tmp_path / "target", classes=2, per_class=5, seed=3)
    run = tk.fit(source, target=str(target), adapt="coral", strategy="linear-probe",
                 **dict(AUDIO_FAST, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache")))
    assert run.metrics["modality"] == "audio" and run.metrics["adaptation"]["n_scored"] == 10


def test_mcc_on_the_probe_moves_the_boundary_into_the_targets_gap_deterministically():
    """The target is the source moved along the class axis: the source-only boundary cuts through a target class;
    MCC on the target predictions (the head refined on cached features) moves it towards the gap between them."""
    from transferkit.adaptation._feature_level import fit_mcc_probe

    rng = np.random.default_rng(0)
    y, yt = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    xs, xt = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    xs[:, 0] += 4 * y - 2
    xt[:, 0] += 4 * yt - 0.5
    xs, xt = xs.astype(np.float32), xt.astype(np.float32)
    none, _ = probe_accuracy("none", xs, y, xt, yt)
    task, cfg = get_task("classify").for_run(resolve_config({}), None), resolve_config({})
    heads = []
    for _ in range(2):
        model = TransferModel(_Features(8), build_head("linear", 8, 2))
        info = fit_mcc_probe(task, model, xs, y, xt, cfg)["info"]
        heads.append(model.head[0].weight.detach().clone())
    with torch.no_grad():
        mcc = float((model.head(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean())
    assert mcc >= none + 0.01, (none, mcc)
    assert torch.equal(heads[0], heads[1]) and "MCC" in info["head"]


def test_a_chosen_feature_level_method_is_checked_against_the_plain_probe_without_labels(tmp_path):
    source, target = domains(tmp_path)
    kw = dict(FAST, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), strategy="linear-probe")
    a = tk.fit(source, target=str(target), adapt="coral", **kw).metrics["adaptation"]
    none = tk.fit(source, target=str(target), adapt="none", **kw).metrics["adaptation"]
    assert a["snd_source_only"] == pytest.approx(none["snd"], abs=1e-6)  # the same plain probe, fitted aside
    assert a["criterion_predicts_loss"] == (a["snd"] < none["snd"])
    bn = tk.fit(source, target=str(target), adapt="adabn", **kw).metrics["adaptation"]  # on re-estimated features
    assert bn["snd_source_only"] == pytest.approx(none["snd"], abs=1e-6)
    assert bn["criterion_predicts_loss"] == (bn["snd"] < none["snd"])


def test_fine_tuning_with_a_target_follows_the_published_recipe_for_every_method_and_source_only(tmp_path):
    """TLlib's recipe by default (bottleneck, SGD, inverse decay, 32 + 32 per step, fixed steps) for an end-to-end
    method and for the source-only fine-tune it is measured against; a probe keeps its own settings; flags win."""
    from transferkit.config import load_config_file
    from transferkit.training._loop import inverse_decay

    source, target = domains(tmp_path)
    kw = dict(backbone=FAST["backbone"], image_size=32, workers=0, epochs=1, epoch_steps=2,
              output=str(tmp_path / "runs"),
              cache_dir=str(tmp_path / "cache"), target=str(target), strategy="finetune")
    for method in ("dann", "none"):
        run = tk.fit(source, adapt=method, **kw)
        cfg = load_config_file(run.path / "config.yaml")
        assert {k: cfg[k] for k in ("head", "optimizer", "lr", "weight_decay", "batch_size", "schedule")} == {
            "head": "bottleneck:256", "optimizer": "sgd", "lr": 0.01, "weight_decay": 1e-3, "batch_size": 32,
            "schedule": "inverse"}
        head = tk.load(run.path).model.head
        assert isinstance(head[1], torch.nn.BatchNorm1d) and head[-1].in_features == 256
    probe = load_config_file(tk.fit(source, adapt="coral", **{**kw, "strategy": "linear-probe"}).path / "config.yaml")
    assert probe["head"] == "linear" and probe["optimizer"] == "adamw"
    mine = load_config_file(tk.fit(source, adapt="mcc", head="linear", lr=0.003, **kw).path / "config.yaml")
    assert mine["head"] == "linear" and mine["lr"] == 0.003 and mine["optimizer"] == "sgd"
    f = inverse_decay(300)
    assert f(0) == 1.0 and f(300) == pytest.approx(21 ** -0.75) and f(150) > f(151)


def test_the_adaptation_term_reads_the_bottleneck_of_both_domains_in_one_batch():
    head = build_head("bottleneck:8", 4, 3)
    model = TransferModel(_Features(4), head)
    seen = {}

    class Term(torch.nn.Module):
        def forward(self, zs, zt, ls, lt):
            seen.update(zs=zs.shape, zt=zt.shape, ls=ls.shape)
            return zs.sum() * 0

    model.adapter = Term()
    out = _losses.PairModel(model)({"source": torch.randn(5, 4), "target": torch.randn(5, 4)})
    assert seen == {"zs": (5, 8), "zt": (5, 8), "ls": (5, 3)} and out["logits"].shape == (5, 3)


def test_deep_embedded_validation_weighs_source_losses_toward_the_target():
    """Val items that look like the target carry the loss: DEV estimates a high target loss where the plain mean is
    low, and the plain mean where both domains are alike (You et al., ICML 2019)."""
    from transferkit.evaluation import deep_embedded_validation

    rng = np.random.default_rng(0)
    fs = rng.normal(size=(400, 2))
    loss = (fs[:, 0] > 1.0).astype(float) * 2.0  # wrong only where the source looks like the target
    shifted = rng.normal(size=(400, 2)) + [2.5, 0]
    alike = rng.normal(size=(400, 2))
    assert deep_embedded_validation(fs, loss, shifted) > 3 * loss.mean()
    assert deep_embedded_validation(fs, loss, alike) == pytest.approx(loss.mean(), rel=0.3)
    assert np.isnan(deep_embedded_validation(fs[:3], loss[:3], shifted))


def test_epoch_steps_fix_the_epoch_whatever_the_data_size():
    from transferkit.strategies import get_strategy

    strategy = get_strategy(resolve_config({"strategy": "finetune", "epoch_steps": 7, "batch_size": 4}))
    assert strategy.epoch_samples(1000, 4, 3) == 28 and strategy.steps_per_epoch(1000) == 7
    assert strategy.steps_per_epoch(10) == 7  # small data: more than one pass
    assert get_strategy(resolve_config({"strategy": "finetune", "batch_size": 4})).steps_per_epoch(1000) == 250


def test_every_adapted_epoch_is_scored_on_the_target_and_dev_picks_the_epoch_without_its_labels(tmp_path):
    source, target = domains(tmp_path)
    kw = dict(FAST, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), target=str(target),
              strategy="finetune", epochs=3, epoch_steps=2, val_fraction=0.3)
    run = tk.fit(source, adapt="dann", select="dev", **kw)
    rows = run.history
    assert all({"target_snd", "target_dev", "target_acc"} <= set(r) for r in rows)
    kept = min(rows, key=lambda r: r["target_dev"])["epoch"]
    assert run.metrics["kept_epoch"] == kept and [r["kept"] for r in rows].count(1) == 1
    assert "Deep Embedded Validation" in run.metrics["selection"]
    assert "label-free target scores by epoch" in (run.path / "report.html").read_text()
    assert run.metrics["adaptation"]["selection"].startswith("epoch with the lowest Deep Embedded")
    # the target's labels are recorded per epoch, never read: relabelled targets keep the same choice
    for d in (target / "class0", target / "class1"):
        d.rename(d.with_name(d.name + "x"))
    again = tk.fit(source, adapt="dann", select="dev", **{**kw, "output": str(tmp_path / "again")})
    assert again.metrics["kept_epoch"] == kept
    assert [r["target_dev"] for r in again.history] == pytest.approx([r["target_dev"] for r in rows])


def test_adapt_auto_while_fine_tuning_trains_each_method_and_keeps_the_densest_target_predictions(tmp_path):
    from transferkit.adaptation import TRAINED_AUTO

    source, target = domains(tmp_path)
    run = tk.fit(source, adapt="auto", **dict(FAST, output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"),
                                             target=str(target), strategy="finetune", epochs=2, epoch_steps=1,
                                             val_fraction=0.3, name="auto"))
    auto = run.metrics["auto"]
    rows = {r["adapt"]: r for r in auto["candidates"]}
    assert tuple(rows) == TRAINED_AUTO and all(r["status"] in ("done", "kept") for r in rows.values())
    kept = max(rows.values(), key=lambda r: r["val"])
    assert kept["status"] == "kept" and auto["kept"] == kept["adapt"] == run.metrics["adaptation"]["method"]
    for name, r in rows.items():  # each candidate is an ordinary run, scored on the whole target
        cand = json.loads((run.path / "candidates" / name / "metrics.json").read_text())
        assert cand["adaptation"]["snd"] == pytest.approx(r["val"]) and "dev" in cand["adaptation"]
    assert run.path.name == "auto" and (run.path / "model.safetensors").is_file()
    assert "soft neighbourhood density" in auto["why"] and run.metrics["adaptation"]["accuracy"] >= 0
    assert run.metrics["adaptation"]["snd"] == pytest.approx(kept["val"])  # the same model, the same target
