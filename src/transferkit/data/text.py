"""Text classification data: CSV/TSV/JSONL with a text column and a label column."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import torch

from ._datasets import Items, LabelledData

log = logging.getLogger("transferkit")


class TextData(LabelledData):
    """Texts and labels from a CSV/TSV/JSONL file (optional ``split`` column).

    Empty texts are listed with their line numbers and skipped; labels seen once are reported.
    """

    kind = "text"
    inputs_are_files = False

    def __init__(self, path: str | Path, text_column: str = "text", label_column: str = "label", **kwargs):
        super().__init__(**kwargs)
        self.path = path
        self.text_column = text_column
        self.label_column = label_column

    def describe(self) -> str:
        return f"text file {self.path}"

    def _collect(self):
        kept = []
        for _where, text, label, split, group in self._table(Path(self.path), self.text_column, "text"):
            kept.append((text, label, split))
            if group:
                self.row_groups_[text] = group
        once = [lab for lab, n in Counter(lab for _, lab, _ in kept).items() if n == 1]
        if once:
            log.warning("label(s) seen only once: %s", ", ".join(once[:10]))
        return self._by_split(kept)


class TextDataset(torch.utils.data.Dataset):
    """Texts → token batches (tokenised in ``collate_fn``, padded per batch)."""

    def __init__(self, items: Items, tokenizer, max_length: int = 128):
        self.items = items
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items.inputs[i], self.items.labels[i]

    def collate_fn(self, batch):
        texts, labels = zip(*batch)
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return dict(enc), torch.tensor(labels)
