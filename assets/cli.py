"""The ``sae-lake`` command: ad hoc SQL on the lake's catalog, the toy-world demo, the plan of a run, and the
export of an SAE's latents for Neuronpedia."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

FORMATS = ("table", "csv", "json", "parquet")


def _sql(args: argparse.Namespace) -> int:
    import duckdb
    import polars as pl

    from assets.lakehouse.config import load_settings, open_lake
    from assets.lakehouse.lake import Lake
    from assets.lakehouse.sql import ReadQueryError, read_query

    lake = Lake(Path(args.catalog).parent) if args.catalog else open_lake(load_settings())
    try:
        result = read_query(lake, args.query)
    except ReadQueryError as exc:
        print(f"sae-lake sql: {exc}", file=sys.stderr)
        return 1
    if args.format == "table":
        duckdb.from_arrow(result).show(max_width=200, max_rows=args.max_rows)
        return 0
    frame = pl.from_arrow(result)
    if args.format == "parquet":
        if not args.output:
            print("sae-lake sql: --format parquet needs --output FILE", file=sys.stderr)
            return 2
        frame.write_parquet(args.output)
    elif args.format == "csv":
        frame.write_csv(args.output or sys.stdout)
    else:
        text = frame.write_json()
        Path(args.output).write_text(text) if args.output else print(text)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from assets.demo import print_summary, run_demo

    start = time.perf_counter()
    timings = run_demo(verbose=args.verbose, workers=args.workers)
    wall = time.perf_counter() - start
    print_summary()
    print(f"\ndemo: {len(timings)} runs in {wall:.0f}s; `make ui` shows them")
    return 0


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return number


def _check_config(_args: argparse.Namespace) -> int:
    from assets.lakehouse.config import lake_root, load_settings

    settings = load_settings()
    print(f"lake: {lake_root(settings)}")
    for m in settings.registry:
        twin = f"  (control: {m.control_of} with random weights, seed {m.control_seed})" if m.control_of else ""
        print(f"  {m.slug:20s} {m.source:30s} layer {m.layer} {m.hook} tokens {m.tokens}{twin}")
    return 0


def _plan(_args: argparse.Namespace) -> int:
    from assets.lakehouse.config import load_settings
    from assets.plan import format_plan, hours, judge_cost, plan

    settings = load_settings()
    plans = plan(settings)
    print(format_plan(plans), "", judge_cost(settings, plans), hours(settings, plans), sep="\n")
    return 0


def _export_neuronpedia(args: argparse.Namespace) -> int:
    from assets.dashboards.neuronpedia import ExportError, export_lake

    try:
        written = export_lake(Path(args.out), args.model, args.sae, args.features_per_batch)
    except ExportError as exc:
        print(f"sae-lake export neuronpedia: {exc}", file=sys.stderr)
        return 2
    for folder, latents in written:
        print(f"{folder}: {latents} latents")
    return 0


def main(argv: list[str] | None = None) -> int:
    from assets.lakehouse.config import ConfigError
    from assets.lakehouse.objectstore import ObjectStoreError

    parser = argparse.ArgumentParser(prog="sae-lake", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sql = sub.add_parser("sql", help="run SQL read-only on lake/catalog.duckdb")
    sql.add_argument("query")
    sql.add_argument("--format", choices=FORMATS, default="table")
    sql.add_argument("--output", help="write to this file instead of the terminal")
    sql.add_argument("--max-rows", type=int, default=40)
    sql.add_argument("--catalog", help="a local lake's catalog file (default: the catalog of lake.toml's lake)")
    sql.set_defaults(fn=_sql)
    demo = sub.add_parser("demo", help="materialize the toy-world graph and print the result tables")
    demo.add_argument("-v", "--verbose", action="store_true", help="stream every Dagster event")
    demo.add_argument("--workers", type=_positive, help="runs at a time, each in its own process (default: 2 on a "
                      "world pinned to the CPU, 1 otherwise; the tables do not depend on it)")
    demo.set_defaults(fn=_demo)
    sub.add_parser("config", help="validate lake.toml and list the registry").set_defaults(fn=_check_config)
    sub.add_parser("plan", help="what lake.toml asks for, per model, before anything runs").set_defaults(fn=_plan)
    export = sub.add_parser("export", help="write the lake's results in another tool's layout")
    target = export.add_subparsers(dest="target", required=True)
    neuronpedia = target.add_parser("neuronpedia", help="every SAE's latents as SAEDashboard's Neuronpedia runner "
                                    "writes them: batch-<n>.json files and explanations.jsonl, per model and SAE")
    neuronpedia.add_argument("--out", required=True, help="the folder to write <model>/<sae>/ under")
    neuronpedia.add_argument("--model", help="only this model (default: every model with dashboards)")
    neuronpedia.add_argument("--sae", help="only this SAE (default: every SAE of the model)")
    neuronpedia.add_argument("--features-per-batch", type=_positive, default=128, help="latents per batch file")
    neuronpedia.set_defaults(fn=_export_neuronpedia)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, FileNotFoundError, ObjectStoreError) as exc:
        print(f"sae-lake: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
