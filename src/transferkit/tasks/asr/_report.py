"""The speech recognition report: WER and CER, what the run kept, per-speaker WER, and the worst utterances with
reference and hypothesis (differing words marked) and an audio player."""

from __future__ import annotations

import html
from pathlib import Path

from ...evaluation import kpis
from ._text import marked_diff

WORST = 12
STYLE = ("<style>mark.substitute{background:#ffe08a}mark.delete{background:#ffb3b3;text-decoration:line-through}"
         "mark.insert{background:#b3d9ff}td.t{max-width:28em}</style>")


def sections(run_dir: Path, m: dict, rows: list[dict], modality) -> list[str]:
    head = kpis([("WER", f"{m['wer']:.1%}"), ("CER", f"{m['cer']:.1%}"), ("utterances", m["n"]),
                 ("words", m["words"])], m.get("seconds", 0))
    kept = m.get("kept_epoch")
    note = (f"Model selection: {html.escape(str(m.get('selection', '')))}; head {m.get('head')}; text normalised "
            f"'{m.get('normalise')}' on both sides before scoring.")
    if kept == 0 and m.get("strategy") != "zero-shot":
        note += (" <b>No trained epoch beat the pretrained model on val: the run kept the untrained (zero-shot) "
                 "weights.</b>")
    out = [STYLE, head, f"<p class=note>{note}</p>"]
    groups = m.get("per_group") or {}
    if groups:
        body = "".join(f"<tr><td>{html.escape(g)}</td><td>{v['wer']:.1%}</td><td>{v['words']}</td></tr>"
                       for g, v in groups.items())
        out += ["<h2>WER per speaker (group)</h2>", f"<table><tr><th>group</th><th>WER</th><th>words</th></tr>{body}</table>"]
    if rows:
        worst = sorted(rows, key=lambda r: (-int(r["word_errors"]) / max(1, int(r["words"])), r["input"]))[:WORST]
        body = []
        for r in worst:
            ref, hyp = marked_diff(r["reference"], r["hypothesis"])
            rate = int(r["word_errors"]) / max(1, int(r["words"]))
            body.append(f"<tr><td>{modality.preview(r['input'])}<br><small>{html.escape(Path(r['input']).name)}</small>"
                        f"</td><td>{rate:.0%}</td><td class=t>{ref}</td><td class=t>{hyp}</td></tr>")
        out += [f"<h2>Worst {len(worst)} utterances</h2><p>Marked: <mark class=substitute>substituted</mark>, "
                "<mark class=delete>deleted</mark> (reference words missing), <mark class=insert>inserted</mark>.</p>",
                "<table><tr><th>clip</th><th>WER</th><th>reference</th><th>hypothesis</th></tr>"
                + "".join(body) + "</table>"]
    return out
