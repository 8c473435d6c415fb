"""Reading CSV/TSV/JSONL tables so that every row is either read exactly or reported with its line number.

- Quotes are explicit: ``quoting="csv"`` (RFC 4180: a quoted field may hold delimiters and line breaks),
  ``"none"`` (quotes are ordinary characters, as in most TSV exports), or ``"auto"`` (csv quoting, but a
  quote that swallows what look like further rows is an error that names its line and both choices).
- Records are split on line breaks only (``\\n``, ``\\r\\n``, ``\\r``): U+2028, NEL and form feeds stay
  inside their field.
- A row with more or fewer fields than the header, and a JSONL line that is not an object, is listed
  (``problems``) and skipped, never merged or dropped silently.
- Labels are stripped; an empty or missing label (``""``, ``nan``, ``null``, ``None``) is a listed skip;
  labels that differ only by case, spacing or number format (``1`` / ``1.0``) are reported.
- Split values accept the usual spellings (``valid``, ``validation``, ``dev``, ``Test`` …); anything
  else is an error that lists the values seen.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

log = logging.getLogger("transferkit")
QUOTING = ("auto", "csv", "none")
SPLIT_ALIASES = {"train": "train", "training": "train", "trn": "train",
                 "val": "val", "valid": "val", "validation": "val", "dev": "val", "development": "val",
                 "test": "test", "testing": "test", "tst": "test"}
MISSING = {"", "nan", "none", "null", "n/a", "na"}


@dataclass
class Table:
    """Rows of a table with the physical line each starts on, and the rows that could not be read."""

    path: Path
    header: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # ("path:line", reason)


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"File {path} does not exist" if not path.exists() else f"{path} is not a file",
                        "a CSV/TSV/JSONL file", "Check the path")
    return path.read_bytes()


def _text(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line} is not valid UTF-8 (byte {exc.start})", "a UTF-8 text file",
                        "Re-save the file as UTF-8") from None


def _delimiter(path: Path, text: str) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    first = text.split("\n", 1)[0]
    # A CSV exported with another separator (semicolons in many European locales) is read as such.
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] and counts[","] == 0 else ","


def read_rows(path: str | Path, quoting: str = "auto") -> Table:
    """Read a CSV/TSV (delimiter by extension, else from the header line) or a JSONL file.

    Detecting the modality and reading the data both read the table: a parse is kept per (file, quoting,
    content), so the same bytes are parsed once. Callers must not change the returned table.
    """
    path = Path(path)
    if quoting not in QUOTING:
        raise DataError(f"quoting={quoting!r} is not a valid choice", f"one of {', '.join(QUOTING)}")
    raw = _read(path)
    key = (str(path.resolve()), quoting, len(raw), hash(raw))
    if key not in _PARSED:
        _PARSED.clear()  # one table at a time: the detection and the read of the same file
        _PARSED[key] = _parse(path, quoting, raw)
    return _PARSED[key]


_PARSED: dict[tuple, Table] = {}


def _parse(path: Path, quoting: str, raw: bytes) -> Table:
    if path.suffix.lower() in (".jsonl", ".json"):
        return _read_jsonl(path, raw)
    text = _text(path, raw)
    delim = _delimiter(path, text)
    csv.field_size_limit(2**31 - 1)  # long texts are data, not an error
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim,
                        quoting=csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL, strict=False)
    table = Table(path, [])
    end = 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if not table.header:
                table.header = [h.strip() for h in record]
                continue
            where = f"{path}:{start}"
            if quoting == "auto" and end > start and any(delim in f and "\n" in f for f in record):
                raise DataError(f"{where}: a quote opened on this line runs to line {end}, taking in what look like "
                                f"{end - start} more rows", "quotes that close on the line they open, or "
                                "an explicit choice", "Pass --quoting none if quotes are ordinary characters in this "
                                "file, or --quoting csv if fields really span lines")
            if len(record) != len(table.header):
                table.problems.append((where, f"{len(record)} field(s), the header has {len(table.header)}"))
                continue
            table.rows.append(dict(zip(table.header, record)))
            table.lines.append(start)
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num + 1} cannot be read as {'TSV' if delim == chr(9) else 'CSV'} ({exc})",
                        "a well-formed table", "Fix that line, or choose --quoting none / csv") from None
    if not table.header:
        raise DataError(f"{path} is empty", "a header line and one row per item")
    return table


def _read_jsonl(path: Path, raw: bytes) -> Table:
    table = Table(path, [])
    keys: dict[str, None] = {}
    for i, line in enumerate(_text(path, raw).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i} is not valid JSON ({exc.msg})", "one JSON object per line") from None
        if not isinstance(obj, dict):
            table.problems.append((f"{path}:{i}", f"a JSON {type(obj).__name__}, not an object"))
            continue
        row = {str(k): _json_str(v) for k, v in obj.items()}
        keys.update(dict.fromkeys(row))
        table.rows.append(row)
        table.lines.append(i)
    table.header = list(keys)
    return table


def _json_str(value) -> str:
    """A JSON value as the text a CSV would hold: ``0`` → "0", ``false`` → "false", ``null`` → ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def clean_label(value: str | None) -> str | None:
    """The label stripped; None when it is missing (empty, nan, null …)."""
    label = (value or "").strip()
    return None if label.lower() in MISSING else label


def clean_split(value: str | None, where: str) -> str | None:
    """``train``/``val``/``test`` from the usual spellings; None when empty; DataError otherwise."""
    raw = (value or "").strip()
    if not raw:
        return None
    split = SPLIT_ALIASES.get(raw.lower())
    if split is None:
        raise DataError(f"{where}: split value {raw!r} is not one of train, val, test",
                        f"one of {', '.join(sorted(SPLIT_ALIASES))} (any case)", "Fix the split column")
    return split


def warn_near_duplicate_labels(labels: list[str], source: str) -> list[list[str]]:
    """Report labels that differ only by case, inner spacing or number format; returns the groups."""
    groups: dict[str, set[str]] = defaultdict(set)
    for lab in set(labels):
        key = " ".join(lab.casefold().split())
        try:
            key = repr(float(key))
        except ValueError:
            pass
        groups[key].add(lab)
    clashes = [sorted(g) for g in groups.values() if len(g) > 1]
    for g in clashes:
        log.warning("%s: labels %s look like one class written differently; they are kept as %d classes",
                    source, " / ".join(repr(x) for x in g), len(g))
    return clashes
