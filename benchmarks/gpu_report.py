"""Write docs/gpu.md from the logs of benchmarks/gpu_check.sh: machine, versions, each stage's
command, exit code, seconds and output (the benchmarks print their medians), and the 10-epoch run's
seconds per epoch.

    python3 benchmarks/gpu_report.py LOGS --run RUN_DIR --out docs/gpu.md [--dry-run]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
from pathlib import Path

from synccp.study import machine_name

TAIL_LINES = 60
NOT_YET = (
    "**Not yet run on a GPU.** No GPU has been lent to a session since this script was "
    "written; below is its `--dry-run` on a CPU (every stage, small, without CUDA), which "
    "checks that the script, the CUDA tests and the benchmarks run. No number below is a GPU "
    "measurement."
)


def command_output(*command: str) -> str:
    if shutil.which(command[0]) is None:
        return f"({command[0]} not found)"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"({err})"
    return (done.stdout or done.stderr).strip()


def versions() -> list[str]:
    import numpy
    import PIL
    import torch

    cuda = torch.cuda.is_available()
    rows = [
        f"- date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}",
        f"- python {platform.python_version()}, torch {torch.__version__}, CUDA "
        f"{torch.version.cuda}, "
        f"cuDNN {torch.backends.cudnn.version()}, numpy {numpy.__version__}, Pillow "
        f"{PIL.__version__}",
        f"- CPU: {machine_name()}, {len(os.sched_getaffinity(0))} cores available, load average "
        f"{os.getloadavg()[0]:.1f} at the end (other work on the machine slows every stage)",
    ]
    if cuda:
        rows.append(
            f"- GPU: {torch.cuda.get_device_name()} "
            f"({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB), "
            + command_output("nvidia-smi", "--query-gpu=driver_version,clocks.max.sm",
                             "--format=csv,noheader")
        )
    else:
        rows.append("- GPU: none (torch.cuda.is_available() is False)")
    return rows


def run_epochs(run: Path) -> list[str]:
    """Seconds per epoch of the CLI run: wall time / epochs, and from the median logged rate."""
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        return ["- the 10-epoch run wrote no summary.json (see its log above)"]
    summary = json.loads(summary_path.read_text())
    rates = [
        json.loads(line).get("images_per_s")
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if '"kind": "train"' in line
    ]
    rates = [r for r in rates[1:] if r]  # the first window holds the warm-up
    images = summary["train_images"]
    rows = [
        f"- {summary['epochs']} epochs of {images} images ({summary['total_steps']} steps, "
        f"{summary['processes']} process(es), {summary['device']}): "
        f"{summary['wall_s_last_process']:.1f} s in all, "
        f"{summary['wall_s_last_process'] / summary['epochs']:.2f} s per epoch (wall, incl. "
        f"warm-up "
        f"and checkpoints)"
    ]
    if rates:
        rows.append(
            f"- median logged rate {statistics.median(rates):.0f} images/s → "
            f"{images / statistics.median(rates):.2f} s per epoch of training steps"
        )
    return rows


def stage_sections(logs: Path) -> tuple[list[str], list[str]]:
    table = ["| stage | exit | seconds | command |", "| --- | --- | --- | --- |"]
    sections = []
    for line in (logs / "stages.tsv").read_text().splitlines():
        name, code, seconds, command = line.split("\t", 3)
        table.append(f"| {name} | {code} | {seconds} | `{command}` |")
        log = logs / f"{name}.txt"
        text = (
            log.read_text(errors="replace").splitlines()[-TAIL_LINES:]
            if log.is_file()
            else ["(no output)"]
        )
        sections += [
            f"### {name}",
            "",
            f"`{command}` → exit {code} in {seconds} s",
            "",
            "```",
            *text,
            "```",
            "",
        ]
    return table, sections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    table, sections = stage_sections(args.logs)
    lines = [
        "# GPU check",
        "",
        "Written by `bash benchmarks/gpu_check.sh"
        + (" --dry-run" if args.dry_run else "")
        + "` (benchmarks/gpu_report.py); do not edit by hand — rerun the script.",
        "",
    ]
    if args.dry_run:
        lines += [NOT_YET, ""]
    lines += [
        "## Machine",
        "",
        *versions(),
        "",
        "## Stages",
        "",
        *table,
        "",
        "## 10-epoch CIFAR-shaped run",
        "",
        *run_epochs(args.run),
        "",
        "## Output of each stage (last lines)",
        "",
        *sections,
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
