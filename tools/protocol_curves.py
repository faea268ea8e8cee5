"""Learning curves of the protocol runs: kNN accuracy against epochs (so runs of other batch
sizes line up) for every run folder holding a `curve.jsonl` (tools/learning_curve.py), beside the
raw-pixel kNN baseline.

Writes one PNG and prints a Markdown table (run, kNN at each probed epoch, final kNN and linear
probes, raw pixels, training time). Several folders may be given. Runs of one method that differ
in a method option (a projector width, say) are labelled with it.

    .venv/bin/python tools/protocol_curves.py studies/cpu_protocol studies/byol_recipe \
        studies/byol_budget studies/barlow_recipe --out docs/results/protocol_curves.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from synccp.results.palette import REFERENCE, style  # noqa: E402

LINES = {"simclr": "-", "byol": "--", "mocov2": "-.", "barlow": ":"}
VARIANT_COLORS = ("#d55e00", "#cc79a7", "#009e73", "#e69f00")  # runs of the later folders


def runs_with_curves(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        found += [path] if (path / "curve.jsonl").is_file() else sorted(
            p.parent for p in path.rglob("curve.jsonl"))
    return found


def _optional(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def read(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    curve = [json.loads(line) for line in (run / "curve.jsonl").read_text().splitlines()]
    result = _optional(run / "eval.json")
    summary = _optional(run / "summary.json") or {}
    return {"run": run.name, "method": config["method"]["name"],
            "algorithm": config["sparsity"]["algorithm"], "width": config["model"]["width"],
            "seed": config["train"]["seed"], "curve": curve, "eval": result,
            "epochs": config["train"]["epochs"], "batch": config["train"]["batch_size"],
            "lr": config["train"]["lr"], "options": config["method"],
            "train_s": sum(p.get("segment_train_s", 0.0) for p in curve), "summary": summary,
            "ramp": (config["sparsity"].get("ramp_start"), config["sparsity"].get("ramp_end"))}


def run_label(row: dict, algorithm: str) -> str:
    """`byol dense w8 s0 (8 ep × batch 128, lr 0.5)`: method, algorithm, width, seed, epochs,
    batch and base learning rate, then the method options that tell it from the other runs of
    its method shown (`distinguish`), e.g. `, proj_output_dim 256`."""
    options = "".join(f", {key} {value:g}" if isinstance(value, float) else f", {key} {value}"
                      for key, value in row.get("differs", {}).items())
    return (f"{row['method']} {algorithm} w{row['width']} s{row['seed']} "
            f"({row['epochs']:g} ep × batch {row['batch']}, lr {row['lr']:g}{options})")


def distinguish(rows: list[dict]) -> list[dict]:
    """Each row with `differs`: its method options whose values vary among the rows of its
    method (two Barlow Twins runs with other projector widths get labels of their own)."""
    varying: dict[str, set[str]] = {}
    for method in {r["method"] for r in rows}:
        same = [r["options"] for r in rows if r["method"] == method]
        varying[method] = {k for k in same[0] if len({json.dumps(o.get(k)) for o in same}) > 1}
    return [{**r, "differs": {k: r["options"][k] for k in sorted(varying[r["method"]])}}
            for r in rows]


def plot(rows: list[dict], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    raw = None
    variants = iter(VARIANT_COLORS)
    for row in rows:
        s = style(row["algorithm"])
        color = s.color if row["first"] else next(variants, "#999999")
        epochs = [p["epoch"] for p in row["curve"]]
        knn = [p["knn_top1"] for p in row["curve"]]
        ax.plot(epochs, knn, color=color, marker=s.marker, markersize=4,
                linestyle=LINES.get(row["method"], "-"),
                label=run_label(row, s.label))
        if row["eval"] and row["eval"].get("raw_pixels"):
            raw = row["eval"]["raw_pixels"]["knn_top1"]
    if raw is not None:
        ax.axhline(raw, label=f"raw pixels ({raw:.2f})", **REFERENCE["raw pixels"])
    sparse = [r for r in rows if r["algorithm"] != "dense" and None not in r["ramp"]]
    if sparse:  # the density ramp of the sparse runs (fractions of training)
        start, end = sparse[0]["ramp"]
        total = sparse[0]["epochs"]
        ax.axvspan(start * total, end * total, color="#dddddd", alpha=0.5, zorder=0,
                   label=f"density ramp ({start:g} → {end:g} of training)")
    ax.set_xlabel("epochs (passes over the 60,000 training images)")
    ax.set_ylabel("kNN top-1 (%), full Fashion-MNIST test set")
    ax.set_title("Learning curves at the CPU protocol (kNN of each probed checkpoint)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=130)


def table(rows: list[dict]) -> str:
    """One row per run, one kNN column per epoch at which any run has a point (`--every 2`
    runs have points at epochs 2, 4, ...; a run without a point there shows "-")."""
    epochs = sorted({p["epoch"] for r in rows for p in r["curve"]})
    head = ["run", *[f"kNN e{e:g}" for e in epochs], "final kNN", "final linear",
            "raw kNN / linear", "train (min)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        at = {p["epoch"]: p["knn_top1"] for p in r["curve"]}
        knn = [f"{at[e]:.2f}" if e in at else "-" for e in epochs]
        enc = (r["eval"] or {}).get("encoder") or {}
        raw = (r["eval"] or {}).get("raw_pixels") or {}
        nan = float("nan")
        cells = [run_label(r, r["algorithm"]), *knn,
                 f"{enc.get('knn_top1', nan):.2f}", f"{enc.get('linear_top1', nan):.2f}",
                 f"{raw.get('knn_top1', nan):.2f} / {raw.get('linear_top1', nan):.2f}",
                 f"{r['train_s'] / 60:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path,
                        help="run or study folders; runs outside the first get own colours")
    parser.add_argument("--out", type=Path, default=Path("docs/results/protocol_curves.png"))
    args = parser.parse_args(argv)
    rows = [{**read(run), "first": i == 0} for i, path in enumerate(args.paths)
            for run in runs_with_curves([path])]
    if not rows:
        print(f"no curve.jsonl under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 2
    rows = distinguish(rows)
    rows.sort(key=lambda r: (r["method"], r["algorithm"] != "dense", r["algorithm"], r["seed"],
                             json.dumps(r["differs"])))
    plot(rows, args.out)
    print(table(rows))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
