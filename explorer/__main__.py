"""Command line: ``python -m explorer eval --models KEY[,KEY...] --data DATASET [--data DATASET...] [--out DIR]``,
``python -m explorer stream --model KEY --audio FILE [--json OUT]``, ``python -m explorer env``
(what results here are computed on: CPU, ISA flags, threads, device, library versions) and
``python -m explorer diff A B`` (two saved evaluations' differences: utterances, WER, environments).

Both run without a display. ``eval``: progress goes to stderr (tqdm), the leaderboard to stdout,
and the per-utterance rows and summary to ``DIR/results.csv``, ``DIR/summary.csv`` and
``DIR/results.json`` (the Evaluate tab can reload that JSON). Several ``--data`` give each
row its ``dataset``, a per-(model, dataset) table (printed, and saved as ``DIR/datasets.csv``)
and each model's ``mean_wer``, the unweighted mean over datasets the Open ASR Leaderboard ranks by.
``--normalizer`` picks the text normaliser (default: the leaderboard's for English).
``eval --backend ray [--address A]`` runs the same evaluation on a Ray cluster
(``explorer.distributed``): Ray Data prints the progress, the summary adds ``throughput_rtfx`` (audio / wall-clock seconds), each row its ``node_id``, and
``DIR/results.parquet`` is written too. ``stream``: the file goes through
LocalAgreement-2 as if it were arriving live (``explorer.simulate``); each pass is printed as it
happens, then the latency figures the browser's streaming tab reports (with ``--reference``, the
word latency against a reference alignment too). ``stream-bench --models KEY[,KEY...] [--chunks
0.5,1,2] [--data DATASET] [--out DIR]``: the latency–accuracy map (``explorer.stream_map``), each
model × minimum chunk on the dataset (default: the LibriVox clips), a table printed and
``DIR/map.csv``, ``map.json`` and ``map.png`` written.
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
    from explorer.scoring import NORMALIZERS

    parser = argparse.ArgumentParser(prog="python -m explorer")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="evaluate models on a dataset with references")
    ev.add_argument("--models", required=True, help="comma-separated model keys (see the Models tab or /models)")
    ev.add_argument(
        "--data", action="append",
        help="folder of audio + .txt, a .csv/.tsv/.jsonl manifest, a folder saved by `datasets`, or hf:NAME (online); "
        "repeat for several datasets, each scored on its own and averaged",
    )  # fmt: skip
    ev.add_argument("--config", help="dataset configuration (Hub datasets), e.g. clean; the same for every --data")
    ev.add_argument("--split", help="dataset split (saved or Hub datasets; default test); the same for every --data")
    ev.add_argument("--limit", type=int, help="evaluate only the first N utterances (of each dataset)")
    ev.add_argument("--probe", action="store_true", help="add the robustness probe's non-speech clips")
    ev.add_argument("--out", type=Path, default=None, help="folder for results.csv, summary.csv, results.json")
    ev.add_argument("--language", default="en", help="language code; also picks the text normaliser")
    ev.add_argument(
        "--normalizer", choices=NORMALIZERS,
        help="text normaliser for WER (default: open-asr-leaderboard for English, whisper-basic otherwise)",
    )  # fmt: skip
    ev.add_argument("--beam-size", type=int, default=1)
    ev.add_argument("--no-vad", action="store_true", help="no voice-activity filter (the probe then shows raw hallucination)")
    ev.add_argument(
        "--backend", choices=("local", "ray"), default="local",
        help="local: in this process; ray: on a Ray cluster (explorer.distributed; needs `pip install ray[data]`)",
    )  # fmt: skip
    ev.add_argument("--address", help="Ray backend: the cluster to join, e.g. 10.0.0.1:6379 (default: start a local one)")
    ev.add_argument(
        "--actors", type=int, default=None,
        help="Ray backend: transcription actors per model (default: one per GPU of the cluster, or 1 without GPUs)",
    )  # fmt: skip
    ev.add_argument("--gpus-per-actor", type=float, default=None, help="Ray backend: GPUs per actor (default: 1 if the cluster has GPUs, else 0)")
    st = sub.add_parser("stream", help="stream a file through LocalAgreement-2 in simulated real time")
    st.add_argument("--model", required=True, help="model key with word timestamps, e.g. faster-whisper/tiny.en")
    st.add_argument("--audio", required=True, type=Path, help="audio file")
    st.add_argument("--min-chunk", type=float, default=1.0, help="seconds of new audio before each pass")
    st.add_argument("--trim", type=float, default=15.0, help="cut the buffer at a segment end past this many seconds")
    st.add_argument("--language", default="en", help="language code; also picks the text normaliser")
    st.add_argument("--normalizer", choices=NORMALIZERS, help="text normaliser for the WER (default: by language)")
    st.add_argument("--beam-size", type=int, default=1)
    st.add_argument("--no-realtime", action="store_true", help="do not wait for the audio: a chunk per pass, simulated times")
    st.add_argument("--reference", help="reference transcript: prints the WER of the committed text")
    st.add_argument("--json", type=Path, default=None, help="write the report (and the score) to this JSON file")
    sb = sub.add_parser("stream-bench", help="latency–accuracy map: models × minimum chunks on a dataset")
    sb.add_argument("--models", required=True, help="comma-separated model keys, e.g. faster-whisper/tiny.en,transformers/whisper-base")
    sb.add_argument("--chunks", default="0.5,1,2", help="comma-separated minimum chunks in seconds (default 0.5,1,2)")
    sb.add_argument("--data", help="dataset as for eval (default: Debian's LibriVox clips)")
    sb.add_argument("--limit", type=int, help="only the first N utterances")
    sb.add_argument("--language", default="en")
    sb.add_argument("--alignment-model", help="model of the reference alignment (default: the largest ready faster-whisper)")
    sb.add_argument("--out", type=Path, default=None, help="folder for map.csv, map.json, map.png")
    en = sub.add_parser("env", help="print the run environment results on this machine record")
    en.add_argument("--json", action="store_true", help="as JSON, one record per engine")
    df = sub.add_parser("diff", help="compare two saved evaluations (results.json or results.csv)")
    df.add_argument("first", type=Path)
    df.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.command == "eval" and not args.data and not args.probe:
        parser.error("give --data, --probe or both")
    if args.command == "eval" and args.backend == "local" and (args.address or args.actors or args.gpus_per_actor is not None):
        parser.error("--address, --actors and --gpus-per-actor are for --backend ray")
    if args.command == "eval" and args.actors is not None and args.actors < 1:
        parser.error("--actors must be at least 1")
    if args.command == "eval" and args.data and len(set(args.data)) < len(args.data):
        parser.error("the same --data is given twice")
    if args.command == "stream" and args.min_chunk <= 0:
        parser.error("--min-chunk must be positive")
    if args.command == "stream-bench":
        try:
            args.chunks = [float(c) for c in args.chunks.split(",") if c.strip()]
        except ValueError:
            parser.error("--chunks must be comma-separated numbers")
        if not args.chunks or min(args.chunks) <= 0:
            parser.error("--chunks must be positive numbers")
    return args


def _seconds(value: Optional[float]) -> str:
    from explorer import display

    return "n/a" if value is None else display.seconds(value)


def _tail(text: str, size: int = 100) -> str:
    return text if len(text) <= size else "…" + text[-size:]


def stream(args: argparse.Namespace) -> int:
    import json

    from explorer import display
    from explorer.audio import AudioError
    from explorer.config import Settings
    from explorer.latency import reference_alignment, stream_latency
    from explorer.scoring import score
    from explorer.service import ModelError, ModelService
    from explorer.simulate import StreamStepRecord, simulate_stream
    from explorer.types import TranscribeOptions

    def show(step: StreamStepRecord) -> None:
        text = " ".join(t for t in (_tail(step.committed), step.unconfirmed and f"[{step.unconfirmed}]") if t)
        print(f"{step.time:6.1f} s (audio {step.audio_seconds:5.1f} s) | {text}", flush=True)

    try:
        service = ModelService(Settings.from_env())
        _, options, _ = service.check(args.model, TranscribeOptions(language=args.language, beam_size=args.beam_size))
        audio = service.decode(args.audio)
        report = simulate_stream(
            service, args.model, audio, options, args.min_chunk, args.trim, realtime=not args.no_realtime, on_step=show
        )
    except (KeyError, AudioError, ModelError, ValueError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    print(f"\n{report.text}\n")
    print(f"model                 {report.model} ({'real time' if report.realtime else 'simulated time'})")
    print(f"audio                 {report.audio_seconds:.2f} s in {report.iterations} passes, {report.trims} buffer trims")
    print(f"first-commit latency  {_seconds(report.first_commit_latency)}")
    print(f"mean commit lag       {_seconds(report.mean_commit_lag)}")
    print(f"processing            {report.processing_seconds:.2f} s (wall {report.wall_seconds:.2f} s)")
    result = report.to_dict()
    if args.reference is not None:
        scored = score(args.reference, report.text, args.language, args.normalizer)
        print(f"WER                   {display.percent(scored.wer)} ({scored.word_errors}/{scored.reference_words} words, {scored.normalizer})")
        result["score"] = asdict(scored)
        try:
            alignment = reference_alignment(service, audio, args.language)
        except (ModelError, ValueError) as exc:
            print(f"no reference alignment: {exc}", file=sys.stderr)
        else:
            latency = stream_latency(report.events, report.processing_seconds, report.audio_seconds, alignment, scored.wer, args.language)
            print(f"word latency          mean {_seconds(latency.mean_word_latency)}, p50 {_seconds(latency.p50_word_latency)}, "
                  f"p90 {_seconds(latency.p90_word_latency)} ({latency.words_matched}/{latency.words_committed} words matched)")  # fmt: skip
            print(f"alignment             {latency.alignment}")
            result["latency"] = asdict(latency)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def stream_bench(args: argparse.Namespace) -> int:

    from tqdm import tqdm

    from explorer import catalog, stream_map
    from explorer.config import Settings
    from explorer.evaluate import DatasetError, load_dataset
    from explorer.service import ModelError, ModelService

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        for key in models:
            catalog.get(key)
        utterances = load_dataset(args.data, limit=args.limit) if args.data else stream_map.librivox_utterances()[: args.limit]
        settings = Settings.from_env()
        service = ModelService(settings)
        with tqdm(total=len(utterances) * (1 + len(models) * len(args.chunks)), unit="stream", file=sys.stderr) as bar:
            points = stream_map.run_map(
                service, models, args.chunks, utterances, args.language, args.alignment_model,
                alignment_cache=settings.data_dir / "alignments", on_progress=lambda done, total, what: bar.update(1),
            )  # fmt: skip
    except (KeyError, DatasetError, ModelError, ValueError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    frame = stream_map.map_frame(points)
    print(stream_map.table(frame).to_string(index=False))
    print(f"\nword latency against: {points[0].latency.alignment}" if points else "")
    if args.out:
        meta = {"models": models, "chunks": args.chunks, "data": args.data or str(stream_map.LIBRIVOX),
                "utterances": len(utterances), "language": args.language, "timeline": "computation-aware simulation (realtime=False)",
                "cpu_threads": settings.cpu_threads}  # fmt: skip
        for path in stream_map.save(frame, args.out, meta):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def show_environment(args: argparse.Namespace) -> int:
    import json

    from explorer.config import Settings
    from explorer.environment import ENGINE_LIBRARIES, describe
    from explorer.service import resolve_device

    settings = Settings.from_env()
    records = []
    for engine in ENGINE_LIBRARIES:
        try:
            device = resolve_device(settings.device, engine)
        except ImportError:  # the engine's library is not installed: its record says so
            device = "cpu"
        # The compute type an engine runs at is known once it loads (each result records it).
        records.append(describe(engine, device, "(as loaded)", settings.cpu_threads))
    if args.json:
        print(json.dumps([asdict(r) for r in records], indent=2))
        return 0
    first = records[0]
    print(f"cpu       {first.cpu}")
    print(f"isa       {first.isa or '(none of the kernel-selecting flags)'}")
    print(f"threads   {settings.cpu_threads} (CPU_THREADS)")
    for r in records:
        print(f"{r.engine:<15} {r.device}{' ' + r.gpu if r.gpu else ''}  {r.libraries}")
    return 0


def show_difference(args: argparse.Namespace) -> int:
    from explorer.evaluate import DatasetError, compare_runs, load_results

    try:
        (a, _, _), (b, _, _) = load_results(args.first), load_results(args.second)
        diff = compare_runs(a, b)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(diff.report())
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "stream":
        return stream(args)
    if args.command == "stream-bench":
        return stream_bench(args)
    if args.command == "env":
        return show_environment(args)
    if args.command == "diff":
        return show_difference(args)

    from tqdm import tqdm

    from explorer import catalog, display
    from explorer.config import Settings
    from explorer import scoring
    from explorer.evaluate import (
        DatasetError, evaluate, load_dataset, probe_utterances, save_results, summarize, summarize_datasets,
    )  # fmt: skip
    from explorer.service import ModelError, ModelService
    from explorer.types import TranscribeOptions

    if args.normalizer:  # every score of this run, per utterance and per model, uses it
        os.environ[scoring.ENV_VAR] = args.normalizer
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    data = args.data or []
    names = [d if d.startswith("hf:") else Path(d).resolve().name for d in data]
    names = names if len(set(names)) == len(names) else data  # the arguments as given when names collide
    try:
        for key in models:
            catalog.get(key)
        normalizer = scoring.normalizer_for(args.language)
        utterances = []
        for source, name in zip(data, names):
            utterances += load_dataset(source, config=args.config, split=args.split, limit=args.limit, name=name)
        utterances += probe_utterances() if args.probe else []
        options = TranscribeOptions(language=args.language, beam_size=args.beam_size, vad_filter=not args.no_vad)
        settings = Settings.from_env()
        if args.backend == "ray":  # Ray Data prints its own progress
            try:
                import ray  # noqa: F401

                from explorer.distributed import evaluate_on_ray
            except ImportError:
                print("error: --backend ray needs Ray: pip install 'ray[data]'", file=sys.stderr)
                return 2

            run = evaluate_on_ray(
                models, utterances, options, args.language, actors=args.actors, gpus_per_actor=args.gpus_per_actor, address=args.address
            )
            rows, summary = run.rows, run.summary(args.language, settings.device_price_per_hour)
        else:
            service = ModelService(settings)
            with tqdm(total=len(models) * len(utterances), unit="utt", file=sys.stderr) as bar:
                rows = evaluate(service, models, utterances, options, args.language, on_result=lambda r: bar.update(1))
            summary = summarize(rows, args.language, price_per_hour=settings.device_price_per_hour)
    except (KeyError, DatasetError, ModelError, ValueError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    by_dataset = summarize_datasets(rows, args.language) if len(data) > 1 else None
    if by_dataset is not None:
        print(display.frame(by_dataset).to_string(index=False), end="\n\n")
    print(display.frame(summary).to_string(index=False))  # as the tabs show it; --out keeps the numbers
    for row in rows[rows["error"] != ""].itertuples():
        print(f"failed: {row.model} {row.id}: {row.error}", file=sys.stderr)
    if args.out:
        meta = {
            "data": data[0] if len(data) == 1 else data, "models": models, "language": args.language,
            "normalizer": normalizer, "options": asdict(options), "probe": args.probe,
        }  # fmt: skip
        if args.backend == "ray":
            meta.update(backend="ray", address=args.address, actors=args.actors, gpus_per_actor=args.gpus_per_actor)
        save_results(args.out, rows, summary, meta, by_dataset)
        if args.backend == "ray":
            from explorer.distributed import save_parquet

            save_parquet(args.out, rows)
    return 0 if (rows["error"] == "").all() else 1


if __name__ == "__main__":
    sys.exit(main())
