"""Cross-check of the analytic array timing against SCALE-Sim v3 (PyPI `scalesim`, optional).

We export GEMMs to SCALE-Sim's GEMM topology CSV (`Layer, M, N, K, Sparsity,`: C[M×N] =
A[M×K]·B[K×N], B the "filter" operand, `N:M` sparsity of B along K), write a config with our
array size and dataflow, run it in a subprocess and read `COMPUTE_REPORT.csv`'s compute cycles
("Total Cycles", stalls excluded). SCALE-Sim applies N:M only with the ws dataflow.

SCALE-Sim 3.0.0 calls `int()` on a one-element array, which NumPy ≥ 2.4 rejects; run it with an
interpreter that has `scalesim` and `numpy<2.4` (`python=` argument or `SYNCCP_SCALESIM_PYTHON`).
"""

from __future__ import annotations

import configparser
import io
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from synccp.cost.accelerator import (
    Accelerator,
    column_groups,
    compute_cycles,
    nm_length,
)
from synccp.cost.gemms import Gemm

RUN_NAME = "synccp_check"
_RUNNER = """
import sys
from scalesim.scale_sim import scalesim
sim = scalesim(save_disk_space=True, verbose=False, config=sys.argv[1], topology=sys.argv[2],
               layout=sys.argv[3], input_type_gemm=True)
sim.run_scale(top_path=sys.argv[4])
"""


@dataclass(frozen=True)
class CheckGemm:
    """One GEMM to cross-check; `nm` = (n, m) sparsity of the B operand along k, None = dense."""

    name: str
    gemm: Gemm
    nm: tuple[int, int] | None = None


def topology_csv(gemms: list[CheckGemm]) -> str:
    """SCALE-Sim GEMM topology text; each row ends with a comma (SCALE-Sim drops the last field)."""
    lines = ["Layer, M, N, K, Sparsity,"]
    for item in gemms:
        n, m = item.nm or (1, 1)
        lines.append(f"{item.name}, {item.gemm.m}, {item.gemm.n}, {item.gemm.k}, {n}:{m},")
    return "\n".join(lines) + "\n"


def config_text(accel: Accelerator, *, sparsity: bool) -> str:
    """A SCALE-Sim config for `accel`'s array and dataflow; buffers split in three equal SRAMs;
    CALC bandwidth mode (SCALE-Sim sizes the interface so that it never stalls)."""
    kb = max(1, accel.buffer_bytes // 3 // 1024)
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser["general"] = {"run_name": RUN_NAME}
    parser["run_presets"] = {"InterfaceBandwidth": "CALC", "UseRamulatorTrace": "False"}
    parser["architecture_presets"] = {
        "ArrayHeight": str(accel.rows),
        "ArrayWidth": str(accel.cols),
        "ifmapsramszkB": str(kb),
        "filtersramszkB": str(kb),
        "ofmapsramszkB": str(kb),
        "IfmapOffset": "0",
        "FilterOffset": "10000000",
        "OfmapOffset": "20000000",
        "Bandwidth": "10",
        "Dataflow": accel.dataflow,
        "ReadRequestBuffer": "32",
        "WriteRequestBuffer": "32",
    }
    parser["layout"] = {
        "IfmapCustomLayout": "False",
        "IfmapSRAMBankBandwidth": "10",
        "IfmapSRAMBankNum": "10",
        "IfmapSRAMBankPort": "2",
        "FilterCustomLayout": "False",
        "FilterSRAMBankBandwidth": "10",
        "FilterSRAMBankNum": "10",
        "FilterSRAMBankPort": "2",
    }
    parser["sparsity"] = {
        "SparsitySupport": str(sparsity).lower(),
        "SparseRep": "ellpack_block",
        "OptimizedMapping": "false",
        "BlockSize": "4",
        "RandomNumberGeneratorSeed": "40",
    }
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def parse_compute_report(text: str) -> list[int]:
    """Compute cycles ("Total Cycles", stalls excluded) per layer of a COMPUTE_REPORT.csv."""
    rows = [line.split(",") for line in text.strip().splitlines()]
    header = [cell.strip() for cell in rows[0]]
    column = header.index("Total Cycles")
    return [
        int(float(row[column])) for row in rows[1:] if len(row) > column and row[column].strip()
    ]


def run_scalesim(
    gemms: list[CheckGemm],
    accel: Accelerator,
    *,
    python: str | None = None,
    timeout_s: float = 600.0,
) -> list[int]:
    """Run SCALE-Sim on `gemms` with `accel`'s array; returns its compute cycles per GEMM."""
    python = python or os.environ.get("SYNCCP_SCALESIM_PYTHON") or sys.executable
    sparse = any(item.nm for item in gemms)
    if sparse and accel.dataflow != "ws":
        raise ValueError("SCALE-Sim applies N:M sparsity only with the ws dataflow")
    with tempfile.TemporaryDirectory(prefix="synccp-scalesim-") as tmp:
        work = Path(tmp)
        (work / "scale.cfg").write_text(config_text(accel, sparsity=sparse))
        (work / "topology.csv").write_text(topology_csv(gemms))
        (work / "layout.csv").write_text("Layer,\n")
        done = subprocess.run(
            [
                python,
                "-c",
                _RUNNER,
                str(work / "scale.cfg"),
                str(work / "topology.csv"),
                str(work / "layout.csv"),
                str(work / "out"),
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=work,
        )
        report = work / "out" / RUN_NAME / "COMPUTE_REPORT.csv"
        if done.returncode != 0 or not report.is_file():
            raise RuntimeError(
                f"SCALE-Sim failed with {python} (needs scalesim and numpy<2.4):\n"
                f"{(done.stderr or done.stdout)[-2000:]}"
            )
        return parse_compute_report(report.read_text())


def analytic_cycles(item: CheckGemm, accel: Accelerator) -> float:
    """Our model's compute cycles for the same GEMM (N:M compresses k to ⌈k/m⌉·n per column)."""
    gemm = item.gemm
    if item.nm is None:
        groups = column_groups(None, gemm.n, gemm.k, accel.cols)
    else:
        length = nm_length(1, gemm.k, n=item.nm[0], m=item.nm[1])
        groups = column_groups(None, gemm.n, length, accel.cols)
    return compute_cycles(gemm, groups, "k", accel)
