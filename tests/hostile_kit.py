"""Tools of the hostile suite: copies of a finished run, CLI calls that return (code, stderr),
byte snapshots, hostile pickles and re-signed checkpoints."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from synccp.cli import main
from synccp.rundir.checkpoint import content_checksum

OUTPUTS = ("summary.json", "model.safetensors", "masks.safetensors", "eval.json")


def run_copy(template: Path, tmp_path: Path, *, interrupted: bool = False) -> Path:
    """A copy of the finished template run; `interrupted`: as if killed after its last checkpoint
    (no summary, exports or eval), so `--resume` goes through the checkpoints."""
    run = tmp_path / "run"
    shutil.copytree(template, run)
    if interrupted:
        for name in OUTPUTS:
            (run / name).unlink()
    return run


def cli(capsys, *args) -> tuple[int, str]:
    """`synccp ARGS` in-process: (exit code, stderr + stdout, whitespace-folded)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join((captured.err + " " + captured.out).split())


def resume(capsys, run: Path, *extra) -> tuple[int, str]:
    return cli(capsys, "pretrain", "--no-eval", "--out", run, "--resume", *extra)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def short(code: int, text: str, words: int = 18) -> str:
    """`exit N: first words of the message`, the `got` column of the hostile table."""
    return f"exit {code}: " + " ".join(text.split()[:words])


class Payload:
    """Pickles as a call of `function(*args)`: what a hostile checkpoint would run on load."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def payload_file(path: Path, marker: Path, how: str = "os.system") -> None:
    """A checkpoint-named file whose unpickling would create `marker`."""
    command = f"touch {marker}"
    if how == "os.system":
        torch.save({"step": 1, "x": Payload(os.system, command)}, path)
    elif how == "builtins.exec":
        torch.save(Payload(exec, f"import os; os.system({command!r})"), path)
    else:  # a bare protocol-0 pickle (no zip container) calling posix.system
        path.write_bytes(f"cposix\nsystem\n(S'{command}'\ntR.".encode())


def resign(path: Path, edit) -> None:
    """Load checkpoint `path`, `edit(payload)` in place, recompute the checksum, save it back:
    a file that is intact but wrong in another way."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    if isinstance(payload.get("state"), dict) and "checksum" in payload:
        try:
            payload["checksum"] = content_checksum(payload["state"])
        except TypeError:
            pass
    torch.save(payload, path)


def flip_tensor_byte(path: Path) -> None:
    """Flip one byte inside the largest tensor record of a torch zip checkpoint."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(
            (i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size
        )
    data = bytearray(path.read_bytes())
    start = info.header_offset  # local file header: 30 bytes, then the name and the extra field
    name_length = int.from_bytes(data[start + 26 : start + 28], "little")
    extra_length = int.from_bytes(data[start + 28 : start + 30], "little")
    # stored, not compressed
    data[start + 30 + name_length + extra_length + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
