"""Write AN4's transcript table with a speaker-held-out split: mjgm, mjwl and mmxg are the test speakers (39
utterances), fcaw is val, the other six speakers train. Paths are absolute, so the table can live anywhere.

    python bench/an4_split.py [--out an4.csv] [--an4 ../shared/data/an4]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

TEST, VAL = {"mjgm", "mjwl", "mmxg"}, {"fcaw"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--an4", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "an4"))
    ap.add_argument("--out", default="an4.csv")
    args = ap.parse_args()
    root = Path(args.an4).resolve()
    speaker = {r["file"]: r["speaker"] for r in csv.DictReader(open(root / "speakers_durations.csv"))}
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "transcript", "split", "group"])
        for r in csv.DictReader(open(root / "metadata.csv")):
            s = speaker[r["file"]]
            w.writerow([root / r["file"], r["transcript"], "test" if s in TEST else "val" if s in VAL else "train", s])
    print(args.out)


if __name__ == "__main__":
    main()
