"""Text fine-tuning throughput: a bare PyTorch loop, transformers' Trainer and transferkit, over the same
MiniLM model (encoder + mean pooling + linear head), texts, batch size and optimizer, in one run.

Every contender fine-tunes the whole model for one epoch over the same SMS training texts (batch 16,
max_length 128, AdamW); the figure is training texts per second over that epoch. The bare loop tokenises
each batch as it comes and pads it to its longest text, in random order; the Trainer's dataset is tokenised
once (datasets.map) and padded per batch (DataCollatorWithPadding); transferkit tokenises once and groups
texts of similar length into batches. Each contender is also run with length grouping (bare loop: sorted windows as transferkit
does; Trainer: ``train_sampling_strategy="group_by_length"``) and transferkit without it, to separate the
two effects. The bare loop uses torch.optim.AdamW as written by hand; Trainer and transferkit use the fused kernel.

    HF_HUB_OFFLINE=1 python bench/text_finetune_throughput.py [--texts 1024]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFERKIT_QUIET", "1")

import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from setfit_vs_transferkit import SMS, load  # noqa: E402

BATCH, MAX_LEN = 16, 128


def model_and_tokenizer():
    from transferkit.backbones import create_backbone
    from transferkit.heads import TransferModel, build_head

    torch.manual_seed(0)
    b = create_backbone("packaged:minilm", max_length=MAX_LEN)
    return TransferModel(b, build_head("linear", b.num_features, 2)), b.tokenizer


def bare(texts, y, grouped: bool) -> float:
    """The plain loop: shuffle, tokenise the batch (padding=True), forward, cross-entropy, backward, AdamW."""
    model, tok = model_and_tokenizer()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    order = np.random.default_rng(0).permutation(len(texts))
    if grouped:  # what transferkit does: sort windows of 50 batches by length, shuffle the batches
        lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=MAX_LEN)["input_ids"]]
        span = BATCH * 50
        order = np.concatenate([sorted(order[s:s + span], key=lengths.__getitem__) for s in range(0, len(order), span)])
    batches = [order[s:s + BATCH] for s in range(0, len(order) - BATCH + 1, BATCH)]
    if grouped:
        batches = [batches[i] for i in np.random.default_rng(1).permutation(len(batches))]
    t0 = time.perf_counter()
    for idx in batches:
        enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
        loss = torch.nn.functional.cross_entropy(model(dict(enc)), torch.as_tensor(y[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(batches) * BATCH / (time.perf_counter() - t0)


def trainer(texts, y, grouped: bool) -> float:
    """transformers' Trainer on the same model (a forward that returns the loss), collator padding per batch."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    model, tok = model_and_tokenizer()

    class WithLoss(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
            batch = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                batch["token_type_ids"] = token_type_ids
            logits = self.inner(batch)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    ds = Dataset.from_dict({"text": texts, "labels": y.tolist()})
    ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=MAX_LEN), batched=True, remove_columns=["text"])
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, per_device_train_batch_size=BATCH, num_train_epochs=1, learning_rate=5e-5,
                                 report_to="none", use_cpu=True, dataloader_num_workers=0, save_strategy="no",
                                 logging_strategy="no", seed=0, dataloader_drop_last=True,
                                 train_sampling_strategy="group_by_length" if grouped else "random",
                                 lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0)
        t = Trainer(model=WithLoss(model), args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok))
        t0 = time.perf_counter()
        t.train()
        return (len(texts) // BATCH) * BATCH / (time.perf_counter() - t0)


def transferkit(texts, y, grouped: bool, precision: str = "no") -> float:
    """``tk.fit(strategy="finetune", epochs=1)``: the epoch's own time from history. Full precision, as the other
    contenders run, unless ``precision`` says otherwise (``auto``: transferkit's default, bf16 on CPUs with native
    bf16 units)."""
    import csv

    import transferkit as tk
    from transferkit.training import _loop

    plain = _loop.GlobalBatches

    class Ungrouped(plain):
        def __init__(self, sampler, batch_size, drop_last, lengths=None, generator=None, window=50):
            super().__init__(sampler, batch_size, drop_last, None, generator, window)

    _loop.GlobalBatches = plain if grouped else Ungrouped
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/t.tsv"
            with open(path, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh, delimiter="\t")
                w.writerow(["text", "label", "split"])
                w.writerows([(t, "spam" if v else "ham", "train") for t, v in zip(texts, y)] + [("val text", "ham", "val")])
            run = tk.fit(path, backbone="packaged:minilm", strategy="finetune", epochs=1, batch_size=BATCH,
                         max_length=MAX_LEN, workers=0, output=f"{tmp}/runs", cache_dir=f"{tmp}/cache",
                         precision=precision)
            return (len(texts) // BATCH) * BATCH / run.history[0]["seconds"]
    finally:
        _loop.GlobalBatches = plain


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=1024)
    args = ap.parse_args()
    texts, labels = load(SMS)
    pick = np.random.default_rng(0).permutation(len(texts))[: args.texts]
    texts, y = [texts[i] for i in pick], (labels[pick] == "spam").astype(int)
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"{len(texts)} SMS texts, MiniLM fine-tune, batch {BATCH}, max_length {MAX_LEN}, {torch.get_num_threads()} threads")
    print("| contender | random batches (texts/s) | length-grouped (texts/s) |")
    print("| --- | --- | --- |")
    rates = {}
    for name, fn in (("bare PyTorch loop", bare), ("transformers Trainer", trainer), ("transferkit", transferkit),
                     ("transferkit, precision auto", lambda t, v, g: transferkit(t, v, g, "auto"))):
        rates[name] = (fn(texts, y, False), fn(texts, y, True))
        print(f"| {name} | {rates[name][0]:.1f} | {rates[name][1]:.1f} |", flush=True)
    base = rates["bare PyTorch loop"][0]
    print("ratios against the bare loop with random batches: " + ", ".join(
        f"{n} {a / base:.2f}× / {b / base:.2f}×" for n, (a, b) in rates.items()))


if __name__ == "__main__":
    main()
