"""Tables are read exactly or their rows reported with line numbers: never merged, split or dropped silently."""

from __future__ import annotations

import csv
import io
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transferkit.data import read_rows
from transferkit.data.text import TextData
from transferkit.errors import DataError


def _text_data(path, **kw) -> TextData:
    return TextData(path, val_fraction=0.0, test_fraction=0.0, **kw).setup()


def test_an_unbalanced_quote_is_an_error_not_a_swallowed_block(tmp_path):
    rows = ["label\ttext"] + [f"{'spam' if i % 2 else 'ham'}\tmessage {i}" for i in range(45)]
    rows[19] = 'ham\t"quoted start of message 18'  # never closed
    p = tmp_path / "t.tsv"
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"t.tsv:20: a quote opened on this line runs to line 46.*--quoting none"):
        read_rows(p)
    table = read_rows(p, "none")
    assert len(table.rows) == 45 and table.rows[18]["text"] == '"quoted start of message 18'


def test_unicode_line_breaks_stay_inside_their_field(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\n" + "one\u2028two,a\nthree\x85four,b\nfive\x0csix,a\nseven,b\n", encoding="utf-8")
    table = read_rows(p)
    assert [r["text"] for r in table.rows] == ["one\u2028two", "three\x85four", "five\x0csix", "seven"]
    assert table.lines == [2, 3, 4, 5]


def test_rows_with_the_wrong_number_of_fields_are_listed(tmp_path, caplog):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nfine one,a\nfine two,b\ntoo,many,fields\nfine three,a\nalone\nfine four,b\n")
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        data = _text_data(p)
    assert sorted(data.splits_["train"].inputs) == ["fine four", "fine one", "fine three", "fine two"]
    assert [w for w, _ in data.bad_files_] == [f"{p}:4", f"{p}:6"]
    assert "3 field(s), the header has 2" in caplog.text


def test_jsonl_labels_zero_and_false_are_classes(tmp_path):
    p = tmp_path / "t.jsonl"
    lines = [{"text": f"t{i}", "label": [0, False, 1, True][i % 4]} for i in range(8)]
    p.write_text("\n".join(json.dumps(x) for x in lines) + '\n[1, 2]\n{"text": "x", "label": null}\n')
    data = _text_data(p)
    assert data.classes_ == ["0", "1", "false", "true"] and len(data.splits_["train"]) == 8
    assert {r for _, r in data.bad_files_} == {"a JSON list, not an object", "no label"}
    assert [w.rsplit(":", 1)[1] for w, _ in data.bad_files_] == ["9", "10"]


def test_labels_are_stripped_and_missing_ones_listed(tmp_path, caplog):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nx1,a\nx2,a \nx3, a\nx4,b\nx5,\nx6,nan\nx7,1\nx8,1.0\nx9,B\n")
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        data = _text_data(p)
    assert data.classes_ == ["1", "1.0", "B", "a", "b"]  # "a " and " a" are "a"
    assert [w.rsplit(":", 1)[1] for w, _ in data.bad_files_] == ["6", "7"]
    assert "'1' / '1.0' look like one class" in caplog.text and "'B' / 'b' look like one class" in caplog.text


@pytest.mark.parametrize("spelling,split", [("valid", "val"), ("Validation", "val"), ("dev", "val"),
                                            ("Test", "test"), ("TRAINING", "train")])
def test_split_spellings(tmp_path, spelling, split):
    p = tmp_path / "t.csv"
    rows = [f"x{i},{'ab'[i % 2]},{'train' if i < 6 else spelling}" for i in range(10)]
    p.write_text("text,label,split\n" + "\n".join(rows) + "\n")
    data = TextData(p).setup()
    assert len(data.splits_[split]) == (10 if split == "train" else 4)


def test_unknown_split_values_are_an_error(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label,split\nx,a,train\ny,b,holdout\n")
    with pytest.raises(DataError, match="t.csv:3: split value 'holdout' is not one of train, val, test"):
        TextData(p).setup()


def test_semicolon_csv_and_long_fields(tmp_path):
    p = tmp_path / "t.csv"
    long = "word " * 40_000  # 200,000 characters: over the csv module's default field limit
    p.write_text(f"text;label\n{long};a\nshort;b\n")
    table = read_rows(p)
    assert table.header == ["text", "label"] and table.rows[0]["text"] == long and table.rows[1]["label"] == "b"


field = st.text(alphabet=st.sampled_from(list('ab ,;\t"\'\u2028\x85\x0c\x00é€\r\n')), max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(field, field), min_size=1, max_size=12), st.sampled_from([",", "\t"]), st.booleans())
def test_any_written_table_reads_back_exactly_or_reports(tmp_path, rows, delim, bom):
    """A table written by a CSV writer reads back exactly with --quoting csv; in auto mode it reads back
    exactly or a row-swallowing quote is reported — never silently different."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=delim)  # RFC 4180: \r\n, fields with line breaks quoted
    w.writerow(["text", "label"])
    w.writerows(rows)
    p = tmp_path / ("t.tsv" if delim == "\t" else "t.csv")
    p.write_bytes((("\ufeff" if bom else "") + buf.getvalue()).encode("utf-8"))
    got = read_rows(p, "csv")
    assert [(r["text"], r["label"]) for r in got.rows] == rows and not got.problems
    try:
        auto = read_rows(p, "auto")
    except DataError as exc:
        assert "a quote opened on this line" in str(exc)
    else:
        assert [(r["text"], r["label"]) for r in auto.rows] == rows
