"""Command line: ``python -m explorer eval --models KEY[,KEY...] --data DATASET [--out DIR]``.

Runs without a display; progress goes to stderr (tqdm), the leaderboard to stdout, and the
per-utterance rows and summary to ``DIR/results.csv``, ``DIR/summary.csv`` and ``DIR/results.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explorer")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="evaluate models on a dataset with references")
    ev.add_argument("--models", required=True, help="comma-separated model keys (see the Models tab or /models)")
    ev.add_argument("--data", required=True, type=Path, help="folder of audio + .txt, or a .csv/.tsv/.jsonl manifest")
    ev.add_argument("--out", type=Path, default=None, help="folder for results.csv, summary.csv, results.json")
    ev.add_argument("--language", default="en", help="language code; also picks the text normaliser")
    ev.add_argument("--beam-size", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from tqdm import tqdm

    from explorer import catalog
    from explorer.config import Settings
    from explorer.evaluate import DatasetError, evaluate, load_dataset, summarize
    from explorer.service import ModelError, ModelService
    from explorer.types import TranscribeOptions

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        for key in models:
            catalog.get(key)
        utterances = load_dataset(args.data)
        options = TranscribeOptions(language=args.language, beam_size=args.beam_size)
        service = ModelService(Settings.from_env())
        with tqdm(total=len(models) * len(utterances), unit="utt", file=sys.stderr) as bar:
            rows = evaluate(service, models, utterances, options, args.language, on_result=lambda r: bar.update(1))
    except (KeyError, DatasetError, ModelError, ValueError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    summary = summarize(rows, args.language)
    print(summary.to_string(index=False))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        rows.to_csv(args.out / "results.csv", index=False)
        summary.to_csv(args.out / "summary.csv", index=False)
        payload = {"summary": summary.to_dict("records"), "utterances": rows.to_dict("records")}
        (args.out / "results.json").write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
