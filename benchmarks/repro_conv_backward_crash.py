"""The CPU crash behind `bench_compile.py --width 4` ("double free or corruption", segfaults, bus
errors), reduced to plain eager torch: the fp32 backward of a 1x1, stride-2 convolution whose
input is channels_last and has few channels. torch.compile's inductor picks channels_last for
the compiled backbone, and at width 4 the first downsample shortcut is exactly such a conv.

It matches uxlfoundation/oneDNN#6035 (open): oneDNN's AVX2 1x1 backward-weights kernel writes
past its workspace for nhwc inputs with fewer channels than its block (8): crashes with one
thread, hangs with two, silently wrong weight gradients on some CPUs.

Each case runs in a child process (a crash kills it) and prints its exit code:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/repro_conv_backward_crash.py
"""

from __future__ import annotations

import subprocess
import sys

import torch

CASE = """
import torch
torch.manual_seed(0)
cin, stride, fmt = {cin}, {stride}, torch.{fmt}
for _ in range(50):
    x = torch.randn(16, cin, 28, 28).to(memory_format=fmt).requires_grad_()
    w = torch.randn(2 * cin, cin, 1, 1, requires_grad=True)
    torch.nn.functional.conv2d(x, w, stride=stride).sum().backward()
"""

CASES = [(cin, 2, "channels_last") for cin in (2, 3, 4, 6, 8, 12, 16, 64)] + [
    (4, 1, "channels_last"),
    (4, 2, "contiguous_format"),
]


def main() -> None:
    from synccp.study import machine_name

    print(f"{machine_name()} | torch {torch.__version__}"
          f" | fp32 1x1 conv backward, batch 16, 28x28, 50 repeats per case")
    for cin, stride, fmt in CASES:
        code = CASE.format(cin=cin, stride=stride, fmt=fmt)
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
            verdict = "ok" if done.returncode == 0 else f"CRASH (exit {done.returncode})"
        except subprocess.TimeoutExpired:
            verdict = "no answer in 120 s"
        print(f"in channels {cin:3d}  stride {stride}  {fmt:17s}  {verdict}")


if __name__ == "__main__":
    main()
