"""Text classification data: CSV/TSV/JSONL with a text column and a label column."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import torch

from ..errors import DataError
from ._datasets import Items, LabelledData, SPLITS, read_table

log = logging.getLogger("transferkit")


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    raw = path.read_bytes()
    for i, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line.decode("utf-8")))
        except UnicodeDecodeError:
            raise DataError(f"{path}:{i} is not valid UTF-8", "a UTF-8 text file", "Re-save the file as UTF-8") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i} is not valid JSON ({exc.msg})", "one JSON object per line") from None
    return rows


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
        path = Path(self.path)
        if not path.is_file():
            raise DataError(f"File {path} does not exist", "a CSV/TSV/JSONL file of texts", "Check the path")
        rows = read_jsonl(path) if path.suffix.lower() in (".jsonl", ".json") else read_table(path)
        if not rows:
            raise DataError(f"{path} has no rows", "a header line and one row per text")
        header = list(rows[0].keys())
        if self.text_column not in header or self.label_column not in header:
            raise DataError(f"{path} has no column '{self.text_column if self.text_column not in header else self.label_column}'"
                            f" (columns: {', '.join(map(str, header))})",
                            f"columns '{self.text_column}' and '{self.label_column}'",
                            "Rename the columns or pass --text-column/--label-column")
        kept, empty = [], []
        for i, r in enumerate(rows, start=2 if path.suffix.lower() not in (".jsonl", ".json") else 1):
            text = str(r.get(self.text_column) or "").strip()
            label = str(r.get(self.label_column) or "").strip()
            if not text or not label:
                empty.append(f"{path}:{i}")
                continue
            kept.append((text, label, str(r.get("split") or "").strip().lower()))
            if str(r.get("group") or "").strip():
                self.row_groups_[text] = str(r["group"]).strip()
        self.bad_files_ = [(loc, "empty text or label") for loc in empty]
        if empty:
            log.warning("skipped %d row(s) with an empty text or label: %s%s", len(empty), ", ".join(empty[:5]),
                        " …" if len(empty) > 5 else "")
        once = [lab for lab, n in Counter(lab for _, lab, _ in kept).items() if n == 1]
        if once:
            log.warning("label(s) seen only once: %s", ", ".join(once[:10]))
        if "split" in header:
            return {s: [(t, lab) for t, lab, sp in kept if sp == s] for s in SPLITS}, []
        return None, [(t, lab) for t, lab, _ in kept]


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
