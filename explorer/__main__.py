"""Command line: ``python -m explorer eval --models KEY[,KEY...] --data DATASET [--out DIR]``.

Runs without a display; progress goes to stderr (tqdm), the leaderboard to stdout, and the
per-utterance rows and summary to ``DIR/results.csv``, ``DIR/summary.csv`` and ``DIR/results.json``
(the Evaluate tab can reload that JSON).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
import logging
import os
import sys
from pathlib import Path
from typing import Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m explorer")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="evaluate models on a dataset with references")
    ev.add_argument("--models", required=True, help="comma-separated model keys (see the Models tab or /models)")
    ev.add_argument(
        "--data",
        help="folder of audio + .txt, a .csv/.tsv/.jsonl manifest, a folder saved by `datasets`, or hf:NAME (online)",
    )
    ev.add_argument("--config", help="dataset configuration (Hub datasets), e.g. clean")
    ev.add_argument("--split", help="dataset split (saved or Hub datasets; default test)")
    ev.add_argument("--limit", type=int, help="evaluate only the first N utterances")
    ev.add_argument("--probe", action="store_true", help="add the robustness probe's non-speech clips")
    ev.add_argument("--out", type=Path, default=None, help="folder for results.csv, summary.csv, results.json")
    ev.add_argument("--language", default="en", help="language code; also picks the text normaliser")
    ev.add_argument("--beam-size", type=int, default=1)
    ev.add_argument("--no-vad", action="store_true", help="no voice-activity filter (the probe then shows raw hallucination)")
    args = parser.parse_args(argv)
    if not args.data and not args.probe:
        parser.error("give --data, --probe or both")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from tqdm import tqdm

    from explorer import catalog
    from explorer.config import Settings
    from explorer.evaluate import DatasetError, evaluate, load_dataset, probe_utterances, save_results, summarize
    from explorer.service import ModelError, ModelService
    from explorer.types import TranscribeOptions

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        for key in models:
            catalog.get(key)
        utterances = load_dataset(args.data, config=args.config, split=args.split, limit=args.limit) if args.data else []
        utterances += probe_utterances() if args.probe else []
        options = TranscribeOptions(language=args.language, beam_size=args.beam_size, vad_filter=not args.no_vad)
        service = ModelService(Settings.from_env())
        with tqdm(total=len(models) * len(utterances), unit="utt", file=sys.stderr) as bar:
            rows = evaluate(service, models, utterances, options, args.language, on_result=lambda r: bar.update(1))
    except (KeyError, DatasetError, ModelError, ValueError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    summary = summarize(rows, args.language)
    print(summary.to_string(index=False))
    for row in rows[rows["error"] != ""].itertuples():
        print(f"failed: {row.model} {row.id}: {row.error}", file=sys.stderr)
    if args.out:
        meta = {"data": str(args.data), "models": models, "language": args.language, "options": asdict(options), "probe": args.probe}
        save_results(args.out, rows, summary, meta)
    return 0 if (rows["error"] == "").all() else 1


if __name__ == "__main__":
    sys.exit(main())
