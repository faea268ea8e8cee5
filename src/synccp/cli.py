"""The `synccp` command line: parse, call the library, print. No training logic lives here."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from importlib import resources
from pathlib import Path

from synccp import __version__, distributed
from synccp.config import ConfigError, apply_overrides, config_to_dict, load_config, load_resolved

LOG = logging.getLogger("synccp")
RANK_ZERO_GRACE_S = 10.0

EPILOG = """examples:
  synccp pretrain                               # the embedded demo (Fashion-MNIST, BYOL + SyncCP)
  synccp pretrain --config configs/simclr.toml --set train.epochs=50 --out runs/x
  synccp pretrain --set sparsity.granularity=nm --set sparsity.n=2 --set sparsity.m=4
  torchrun --standalone --nproc_per_node=2 -m synccp pretrain --out runs/ddp   # one process per GPU
  synccp eval runs/x --probe both
  synccp inspect runs/x
  synccp cost runs/x
  synccp export runs/x --format onnx                 # encoder.onnx, checked with onnxruntime
  synccp config                                      # every config key with its default"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synccp", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sparse training from scratch of self-supervised vision encoders (SyncCP).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"synccp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    pre = sub.add_parser("pretrain",
                         help="self-supervised (sparse) pretraining into a run directory",
                         epilog="every config key with its default and choices: synccp config "
                                "(--format markdown|toml)")
    pre.add_argument("--config", type=Path,
                     help="TOML file or a run's config.json (default: the embedded demo)")
    pre.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set train.epochs=50 (repeatable)")
    pre.add_argument("--out", type=Path,
                     help="run directory (default runs/<time>-<method>-<algorithm>)")
    pre.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its checkpoint, with its stored "
                          "config.json (--config/--set may only repeat it or change "
                          "train.progress/train.log_every)")
    pre.add_argument("--no-eval", action="store_true", help="skip the kNN/linear probes at the end")

    ev = sub.add_parser("eval", help="kNN and linear probes of a finished run (writes eval.json)")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--probe", choices=("linear", "knn", "both"), default="both")
    ev.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ev.add_argument("--subset", type=int, metavar="N",
                    help="quick protocol: probe on the first N train and N test images (default: "
                         "the run's eval.subset; 0 = the full protocol, the one results use)")

    ins = sub.add_parser("inspect", help="per-layer shapes and densities of both branches")
    ins.add_argument("run_dir", type=Path)

    cost = sub.add_parser("cost", help="training-cost and accelerator model of a run or a config")
    cost.add_argument("source", type=Path, help="run directory or config TOML")

    sweep = sub.add_parser(
        "sweep", help="run a grid of configs × seeds (skips finished, resumes interrupted)")
    sweep.add_argument("grids", type=Path, nargs="+", metavar="grid",
                       help="grid TOML (see configs/grids/); several run one after another, all "
                            "validated before the first starts")
    sweep.add_argument("--jobs", type=int, help="runs at once (default: the grid's [sweep] jobs)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="list the cells and what would happen")
    sweep.add_argument("--commit", action="store_true",
                       help="git-commit each finished run's small result files as it finishes "
                            "(a study that survives interruption: a fresh clone resumes from what "
                            "is committed)")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key in every cell (repeatable)")
    sweep.add_argument("--out", type=Path,
                       help="folder of the runs (default: the grid's [sweep] out)")
    sweep.add_argument("--hours", type=float,
                       help="start a run only if it is expected to end within HOURS of now (its "
                            "method's median time per run in this sweep once one has finished, "
                            "until then the remaining-time line's figure); runs started always "
                            "finish, the rest wait for the next sweep")

    export = sub.add_parser("export", help="deployable encoder files: ONNX, channel-compacted")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--format", required=True, choices=("onnx", "compact", "compact-onnx"),
                        help="onnx: the encoder for onnxruntime/TensorRT; compact: channel-"
                             "sparse filters physically removed (safetensors, "
                             "synccp.load_encoder); compact-onnx: both")
    export.add_argument("--out", type=Path,
                        help="output file (default DIR/export/encoder[_compact].*)")

    config = sub.add_parser("config", help="print every config key with its default and choices")
    config.add_argument("--format", dest="style", choices=("text", "markdown", "toml"),
                        default="text")

    report = sub.add_parser(
        "report", help="tables (CSV, Markdown), the claims' verdicts and plots of run directories")
    report.add_argument("run_dirs", type=Path, nargs="+", help="run directories or folders of them")
    report.add_argument("--out", type=Path, required=True, help="report folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    code = _run(args)
    if distributed.launched_world_size() > 1:  # a torchrun worker: see end_worker for why
        distributed.end_worker(code)
    return code


def _run(args) -> int:
    commands = {"pretrain": _pretrain, "eval": _eval, "inspect": _inspect, "cost": _cost,
                "sweep": _sweep, "report": _report, "export": _export, "config": _config}
    try:
        return commands[args.command](args)
    except distributed.RankZeroError:  # rank 0 failed and reports the error itself: wait for it
        time.sleep(RANK_ZERO_GRACE_S)  # to do so before this exit makes torchrun stop every process
        return 2
    except FloatingPointError as err:  # the loss or the weights became NaN/Inf
        print(f"synccp {args.command}: error: {err}", file=sys.stderr)
        return 3
    except (ConfigError, ValueError, OSError, RuntimeError) as err:
        print(f"synccp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "re-run the same command" if args.command == "sweep" else "resume with --resume"
        print(f"synccp {args.command}: interrupted; {hint}", file=sys.stderr)
        return 130


def _pretrain(args) -> int:
    """Pretrain (every torchrun process runs this); rank 0 prints and evaluates afterwards."""
    from synccp import rundir
    from synccp.eval.run import evaluate
    from synccp.train.loop import pretrain

    cfg = _pretrain_config(args)
    if args.resume and rundir.is_finished(args.out):  # finished: touch nothing, not even eval.json
        return _finished(args, cfg)
    if not args.no_eval:
        _check_test_split(cfg)
    with distributed.process_group(cfg.train.device):
        leader = distributed.rank() == 0
        if not leader:
            logging.getLogger().setLevel(logging.WARNING)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        default = Path("runs") / f"{stamp}-{cfg.method.name}-{cfg.sparsity.algorithm}"
        out = args.out or distributed.broadcast_object(default)
        world = distributed.world_size()
        processes = f", {world} processes" if world > 1 else ""
        if leader:
            print(f"synccp pretrain → {out}  ({cfg.method.name}, {cfg.sparsity.algorithm}/"
                  f"{cfg.sparsity.granularity}, {cfg.data.name}, {cfg.model.backbone} width "
                  f"{cfg.model.width}{processes})")
        summary = pretrain(cfg, out, resume=args.resume)
    if not leader:
        return 0
    print(_format_sparsity(summary["sparsity"]))
    if not args.no_eval:
        print(_format_eval(evaluate(out), cfg))
    return 0


def _pretrain_config(args):
    """The config to pretrain: --config/--set, or with --resume the run's stored config.json
    (which --config/--set may only repeat, or change in keys that cannot change the result)."""
    from synccp.rundir import resume_config

    if not args.resume:
        return load_config(args.config, args.overrides)
    if args.out is None:
        raise ConfigError("--resume needs --out DIR, the run directory to continue")
    if args.config is None and not args.overrides:
        return resume_config(args.out, None)
    if args.config is None:  # --set on resume: on top of the stored config
        stored = config_to_dict(resume_config(args.out, None))
        return resume_config(args.out, apply_overrides(stored, args.overrides))
    return resume_config(args.out, load_config(args.config, args.overrides))


def _finished(args, cfg) -> int:
    """`--resume` of a finished run: say so and leave every file as it is."""
    from synccp.rundir import finished_summary

    summary = finished_summary(args.out)
    print(f"synccp pretrain: {args.out} holds a finished run (summary.json); nothing to resume, "
          f"left untouched")
    print(_format_sparsity(summary["sparsity"]))
    return 0


def _check_test_split(cfg) -> None:
    """Load the evaluation split before training, so a broken test file stops the run before it
    starts instead of after it."""
    from synccp.data import load_dataset

    load_dataset(cfg.data.name, "test", root=cfg.data.root or None,
                 image_size=cfg.data.image_size or None)


def _eval(args) -> int:
    from synccp.eval.run import evaluate

    result = evaluate(args.run_dir, probe=args.probe, device=args.device, subset=args.subset)
    print(_format_eval(result, load_resolved(args.run_dir / "config.json")))
    return 0


def _inspect(args) -> int:
    from synccp.results.inspect import format_inspect

    print(format_inspect(args.run_dir))
    return 0


def _cost(args) -> int:
    from synccp.cost.run import cost_report, format_cost, write_cost_json

    report = cost_report(args.source)
    print(format_cost(report))
    if args.source.is_dir():
        write_cost_json(report, args.source / "cost.json")
    return 0


def _sweep(args) -> int:
    from synccp.grid import SweepError
    from synccp.sweep import format_plan, format_remaining, format_summary, run_sweep

    if args.hours is not None and not args.hours > 0:
        raise SweepError(f"--hours must be > 0, got {args.hours}")
    options = dict(jobs=args.jobs, overrides=args.overrides, out=args.out)
    plans = [run_sweep(grid, dry_run=True, **options)
             for grid in args.grids]  # all valid, or exit 2
    if args.dry_run:
        print("\n".join(format_plan(result) + "\n" + format_remaining(result, args.jobs)
                        for result in plans))
        return 0
    print("\n".join(format_remaining(result, args.jobs) for result in plans), flush=True)
    ok = True
    deadline = None if args.hours is None else time.monotonic() + args.hours * 3600
    for grid in args.grids:
        result = run_sweep(grid, commit=args.commit, deadline=deadline, **options)
        print(format_summary(result))
        ok = ok and result.ok
    return 0 if ok else 1


def _export(args) -> int:
    from synccp.export.run import export_run, format_export

    print(format_export(export_run(args.run_dir, args.format, out=args.out)))
    return 0


def _config(args) -> int:
    from synccp.config_reference import reference

    print(reference(args.style))
    return 0


def _report(args) -> int:
    from synccp.results.report import build_report

    print(build_report(args.run_dirs, args.out))
    return 0


def _format_sparsity(sparsity: dict) -> str:
    online, second = sparsity["online"]["total"], sparsity["second"]["total"]
    text = (f"final density: online {online:.3f} (sparsity {100 * (1 - online):.1f}%), "
            f"second branch {second:.3f} (sparsity {100 * (1 - second):.1f}%)")
    unfit = sparsity.get("unfit_layers") or []
    if unfit:
        text += (f"\n{len(unfit)} layer(s) left dense, their shape does not fit the granularity: "
                 + "; ".join(f"{u['name']} ({u['reason']})" for u in unfit[:3])
                 + (" ..." if len(unfit) > 3 else ""))
    return text


def _format_eval(result: dict, cfg) -> str:
    """Encoder accuracy beside raw pixels and, for the default demo, the dense reference."""
    rows = [("encoder (this run)", result["encoder"])]
    if result.get("raw_pixels"):
        rows.append(("raw pixels", result["raw_pixels"]))
    reference = dense_reference(cfg)
    if reference:
        rows.append(("dense reference (same config, dense)", reference))
    width = max(44, *(len(name) for name, _ in rows))
    lines = [f"{'':{width}s} {'kNN top-1':>10s} {'linear top-1':>13s}"]
    for name, values in rows:
        knn = values.get("knn_top1")
        lin = values.get("linear_top1")
        lines.append(f"{name:{width}s} {_pct(knn):>10s} {_pct(lin):>13s}")
    if reference:  # where the reference comes from, below the table so the columns stay narrow
        lines.append(f"dense reference: {reference['source']}")
    lines.append(f"online encoder density (prunable weights): {result['online_density']:.3f}")
    if result.get("protocol", "full") != "full":
        lines.append(f"protocol: {result['protocol']}: development numbers, not results")
    return "\n".join(lines)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2f}%"


def dense_reference(cfg) -> dict | None:
    """Our measured dense run of the same config, when the package records one (reference.json)."""
    table = json.loads(resources.files("synccp").joinpath("reference.json").read_text())
    wanted = config_to_dict(cfg)
    for entry in table["runs"]:
        same = all(wanted[s][k] == v
                   for s, fields in entry["config"].items() for k, v in fields.items())
        if same:
            return entry
    return None


if __name__ == "__main__":
    raise SystemExit(main())
