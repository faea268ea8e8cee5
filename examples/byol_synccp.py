"""BYOL with SyncCP to 90% sparsity and Δ = 0.1, written without synccp's trainer.

Plain torch modules: an online network (encoder + projector), its EMA target, a predictor, a
few tensor augmentations and the BYOL loss. SyncCP prunes both branches at the same steps: the
online encoder to density d(t), the target to d(t) + Δ with M_online ⊆ M_target, and keeps the
target's extra entries alive (docs/sparsity.md, "The denser momentum target"). The loop gains
one line: `sparsifier.step(tau)` after `optimizer.step()` does the mask update, the EMA update
ξ ← τξ + (1 − τ)θ of the target and the target's re-mask.

    python examples/byol_synccp.py --root /usr/share/datasets/fashion-mnist --steps 2000
"""

from __future__ import annotations

import argparse
import copy
import math

import torch
from torch import nn

import synccp
from synccp.data import load_dataset


class Online(nn.Module):
    """Encoder (the stem conv is left dense) + projector (a head: left dense)."""

    def __init__(self, channels: int = 1, width: int = 32, dim: int = 64):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.projector = nn.Sequential(nn.Linear(2 * width, 128), nn.BatchNorm1d(128), nn.ReLU(),
                                       nn.Linear(128, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts (pad 3, crop back), horizontal flips and brightness: (B, C, H, W)."""
    b, _, h, w = images.shape
    padded = nn.functional.pad(images, (3, 3, 3, 3), mode="replicate")
    dy, dx = torch.randint(0, 7, (2,), generator=generator).tolist()
    out = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(b, generator=generator) < 0.5
    out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)
    return out * (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=generator))


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 2 - 2 * nn.functional.cosine_similarity(prediction, target.detach(), dim=-1).mean()


def train(root: str | None = None, *, steps: int = 2000, batch_size: int = 128,
          density: float = 0.1, gap: float = 0.1,
          seed: int = 0) -> tuple[Online, Online, synccp.Sparsifier, float]:
    """Train and return (online, target, sparsifier, last loss)."""
    torch.manual_seed(seed)
    data = load_dataset("fashion_mnist", "train", root=root)
    images = (data.images.float() / 255 - data.mean[0]) / data.std[0]  # (N, 1, H, W)
    online = Online(images.shape[1])
    target = copy.deepcopy(online).requires_grad_(False)
    predictor = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(),
                              nn.Linear(128, 64))
    opt = torch.optim.SGD([*online.parameters(), *predictor.parameters()], lr=0.05, momentum=0.9,
                          weight_decay=1e-5)
    sparsifier = synccp.Sparsifier(online, target=target, optimizer=opt, algorithm="synccp",
                                   density=density, density_gap=gap, total_steps=steps,
                                   update_every=max(1, steps // 40))
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        batch = images[torch.randint(len(images), (batch_size,), generator=generator)]
        a, b = augment(batch, generator), augment(batch, generator)
        with torch.no_grad():
            za, zb = target(a), target(b)  # the denser target: ξ exactly zero outside M_target
        loss = byol_loss(predictor(online(a)), zb) + byol_loss(predictor(online(b)), za)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tau = 1 - (1 - 0.99) * (math.cos(math.pi * step / steps) + 1) / 2  # BYOL's cosine τ
        sparsifier.step(tau)  # masks, EMA target update, target re-mask
    return online, target, sparsifier, float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="Fashion-MNIST folder (default: SYNCCP_DATA)")
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    *_, sparsifier, loss = train(args.root, steps=args.steps)
    summary = sparsifier.summary()
    print(f"loss {loss:.3f}, density online {summary['online']['total']:.3f}, "
          f"target {summary['second']['total']:.3f}")


if __name__ == "__main__":
    main()
