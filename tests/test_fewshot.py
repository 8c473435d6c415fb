"""Few-shot text: the contrastive strategy, --strategy auto, length-bucketed batches, tokenising once, and the
compare --shots sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.strategies import CosinePairs
from transferkit.training._sharding import GlobalBatches


pytest.importorskip("transformers")


def test_auto_picks_contrastive_for_few_texts_and_it_trains_a_head_on_adapted_features(tiny_bert, texts, tmp_path):
    run = tk.fit(texts, backbone=f"hf:{tiny_bert}", epochs=2, batch_size=8, workers=0,
                 output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))
    assert run.config.strategy == "contrastive" and run.metrics["strategy"] == "contrastive"
    assert run.metrics["selection"].startswith("final epoch; head C by cross-validation")
    assert run.metrics["probe"]["head"] == "logistic regression"
    assert run.config.backbone_lr_mult == 0.2  # the strategy's default, below a flag
    assert [set(r) >= {"train_loss"} and "train_acc" not in r for r in run.history] == [True, True]
    from safetensors.torch import load_file

    key = "encoder.layer.0.attention.self.query.weight"
    adapted, start = load_file(str(run.path / "model.safetensors")), load_file(str(tiny_bert / "model.safetensors"))
    assert not torch.equal(adapted[f"backbone.model.{key}"], start[key])  # the encoder itself was trained
    emb = "embeddings.word_embeddings.weight"
    assert torch.equal(adapted[f"backbone.model.{emb}"], start[emb])  # its input stage stays as loaded
    assert not list((tmp_path / "cache").rglob("*.npy"))  # the trained encoder's features are not cached
    assert run.accuracy >= 0.9
    assert (run.path / "report.html").is_file()
    assert tk.evaluate(run.path)["accuracy"] == pytest.approx(run.accuracy)  # an ordinary model when saved


def test_auto_keeps_the_probe_for_images(image_folder, run_kwargs):
    run = tk.fit(image_folder, **run_kwargs)
    assert run.config.strategy == "linear-probe"


def test_cosine_pairs_is_zero_when_classes_are_aligned_and_orthogonal():
    y = torch.tensor([0, 0, 1, 1])
    aligned = torch.tensor([[1.0, 0], [2.0, 0], [0, 1.0], [0, 3.0]])
    assert CosinePairs().loss(aligned, y).item() == pytest.approx(0.0, abs=1e-7)
    mixed = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0]])
    assert CosinePairs().loss(mixed, y).item() > 0.5


def test_length_buckets_group_similar_lengths_and_depend_only_on_the_seed():
    lengths = np.random.default_rng(0).integers(1, 200, 400).tolist()

    def epoch(seed):
        g = torch.Generator().manual_seed(seed)
        sampler = torch.utils.data.RandomSampler(range(400), generator=g)
        return GlobalBatches(sampler, 16, drop_last=False, lengths=lengths, generator=g, window=10).batches()

    batches = epoch(3)
    assert sorted(i for b in batches for i in b) == list(range(400))  # every item once
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 40  # random batches of 16 from 1..200 span ~170
    assert epoch(3) == batches and epoch(4) != batches
    order = [np.mean([lengths[i] for i in b]) for b in batches]
    assert order != sorted(order)  # the batches themselves are shuffled


def test_texts_are_tokenised_once_and_padded_like_the_tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    from transferkit.data import Items
    from transferkit.data.text import TextDataset

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    texts = ["short", "a somewhat longer text than that", "word " * 400]
    ds = TextDataset(Items(texts, [0, 1, 0]), tok, 64)
    assert ds.lengths == [len(tok(t, truncation=True, max_length=64)["input_ids"]) for t in texts]
    batch, _ = ds.collate_fn([ds[i] for i in range(3)])
    ref = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    assert all(torch.equal(batch[k], ref[k]) for k in ref)  # the longest is at max_length: no rounding
    batch, _ = ds.collate_fn([ds[i] for i in range(2)])
    ref = tok(texts[:2], padding=True, pad_to_multiple_of=16, return_tensors="pt")
    assert batch["input_ids"].shape[1] == 16 and all(torch.equal(batch[k], ref[k]) for k in ref)


class _Indexed(torch.utils.data.Dataset):
    lengths = [5, 1, 4, 2, 3]

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.tensor([float(i)]), 0


def test_inference_runs_in_length_order_and_returns_rows_in_input_order():
    from transferkit.features import infer_logits

    seen = []

    class Echo(torch.nn.Module):
        def forward(self, x):
            seen.extend(x[:, 0].tolist())
            return x

    out = infer_logits(Echo(), _Indexed(), batch_size=2, workers=0, channels_last=False)
    assert seen == [1.0, 3.0, 4.0, 2.0, 0.0]  # shortest first
    assert out[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_compare_shots_sweeps_counts_on_one_split(tiny_bert, texts, tmp_path):
    from transferkit.compare import compare_shots

    sweep = compare_shots(str(texts), ["linear-probe", "contrastive"], [4, 8], seeds=1, output=str(tmp_path / "cmp"),
                          backbone=f"hf:{tiny_bert}", epochs=1, batch_size=8, workers=0,
                          cache_dir=str(tmp_path / "cache"))
    assert sweep["shots"] == [4, 8]
    assert set(sweep["lines"]) == {"linear-probe", "contrastive", "tfidf + logreg (no transfer)"}
    for points in sweep["lines"].values():
        assert [p["shots"] for p in points] == [4, 8]
        # a handful of evaluation texts: no interval, and said so (evaluation.crossed_interval's MIN_ITEMS)
        assert all(p["low"] <= p["mean"] <= p["high"] if p["low"] is not None else "too_few" in p for p in points)
    saved = json.loads((tmp_path / "cmp" / sweep["path"].split("/")[-1] / "sweep.json").read_text())
    assert saved["lines"] == sweep["lines"]
    one = json.loads((tmp_path / "cmp" / sweep["path"].split("/")[-1] / "shots-8" / "compare.json").read_text())
    assert one["n_eval"] == sweep["n_eval"]  # the same evaluation split at every count
    assert (tmp_path / "cmp" / sweep["path"].split("/")[-1] / "report.html").is_file()


def test_contrastive_trains_at_least_15_steps_and_15_passes_at_half_the_peak_beyond_15_steps_stretched_beyond_30():
    from transferkit.config import RunConfig
    from transferkit.strategies import get_strategy

    s = get_strategy(RunConfig(strategy="contrastive", batch_size=16, epochs=5))  # as a run resolves them
    assert s.epoch_samples(16, 16, 5) == 48  # 16 texts: 3 steps an epoch, 15 in all
    assert s.epoch_samples(32, 16, 5) == 96  # 32 texts: 15 passes, 30 steps (not stretched)
    assert s.epoch_samples(64, 16, 5) == 384  # 64 texts: 15 passes would be 60 steps: 30 passes, 120 steps
    assert s.epoch_samples(128, 16, 5) == 1536  # 128 texts: 120 steps at 15 passes, stretched 4×: 60 passes
    assert s.epoch_samples(5000, 16, 5) == 60000  # never stretched more than 4×
    assert (s.peak_scale(15), s.peak_scale(16), s.peak_scale(30)) == (1.0, 0.5, 0.5)
    assert (s.peak_scale(120), s.peak_scale(480), s.peak_scale(18750)) == (0.25, 0.125, 0.125)
    for n in (64, 128, 5000):  # the stretch the passes get is the one the peak is divided by
        steps = s.steps_per_epoch(n) * 5
        assert s.peak_scale(steps) == pytest.approx(0.5 / s.stretch(-(-15 * n // 16)), rel=0.01)
    finetune = get_strategy(RunConfig(strategy="finetune", batch_size=16, epochs=5))
    assert finetune.epoch_samples(128, 16, 5) == 128 and finetune.peak_scale(1000) == 1.0


def test_the_loop_applies_the_strategy_peak_scale(tiny_bert, texts, tmp_path):
    from transferkit.strategies import get_strategy
    from transferkit.training._loop import warmup_cosine

    run = tk.fit(texts, backbone=f"hf:{tiny_bert}", strategy="contrastive", epochs=2, batch_size=8, workers=0,
                 output=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))
    s, n = get_strategy(run.config), run.metrics["n_train"]
    per_epoch = s.steps_per_epoch(n)
    total = per_epoch * 2
    peak = s.peak_scale(total)
    assert total > s.min_steps and peak < 1  # a scaled peak is the one in force
    factor = warmup_cosine(int(run.config.warmup_epochs * per_epoch), total)(per_epoch)  # after that many steps
    assert run.history[0]["lr"] == pytest.approx(run.config.lr * peak * factor)  # the head group's lr after epoch 1
    assert f"contrastive: learning rates × {peak:g} for this {total}-step run" in (run.path / "train.log").read_text()


def test_contrastive_draws_random_batches_where_finetune_groups_texts_by_length(tiny_bert, texts, tmp_path,
                                                                                 monkeypatch):
    import transferkit.training._loop as loop

    seen = {}

    class Recording(GlobalBatches):
        def __init__(self, sampler, batch_size, drop_last, lengths=None, generator=None, window=50):
            super().__init__(sampler, batch_size, drop_last, lengths, generator, window)
            seen.setdefault(strategy, []).append(self)

    monkeypatch.setattr(loop, "GlobalBatches", Recording)
    runs = {}
    for strategy in ("finetune", "contrastive"):
        runs[strategy] = tk.fit(texts, backbone=f"hf:{tiny_bert}", strategy=strategy, epochs=1, batch_size=8, workers=0,
               output=str(tmp_path / "runs"), cache_dir=str(tmp_path / strategy))
    grouped, pairs = seen["finetune"][0], seen["contrastive"][0]
    assert grouped.lengths is not None and len(grouped.lengths) == runs["finetune"].metrics["n_train"]  # tokens/text
    assert pairs.lengths is None  # its in-batch pairs come from random batches, not neighbours in length


def test_tokenised_texts_are_read_without_worker_processes():
    import os

    from transferkit.data import Items
    from transferkit.data.text import TextDataset
    from transferkit.features import auto_workers

    class Tokenizer:
        def __call__(self, texts, **_):
            return {"input_ids": [[101, len(t), 102] for t in texts]}

    texts = TextDataset(Items([f"text {i}" for i in range(200)], [0] * 200), Tokenizer())
    assert auto_workers(texts) == 0
    assert auto_workers(torch.utils.data.Subset(texts, list(range(100)))) == 0  # inference reads it in length order

    class Unread(torch.utils.data.Dataset):  # items still to be read: workers where the machine allows
        def __len__(self):
            return 200

    if not torch.cuda.is_available():
        assert auto_workers(torch.utils.data.Subset(Unread(), list(range(100)))) == min(2, os.cpu_count() or 1)
