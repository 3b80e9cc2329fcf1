"""docs/notebook.png and the suggestions table in README.md: the notebook API on real data.

    .venv/bin/python scripts/notebook_figure.py            # writes docs/notebook.png

A small MLP on the Fashion-MNIST training images (the Debian package's files, or
--data-dir), SGD with momentum, lrfind's default plan with its default options; torch is
seeded, so the figure is the same run after run on one machine. The README shows the lines
between the `# shown in README.md` marks, with their imports.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import lrfind
from lrfind.setup.data import read_idx

ROOT = Path(__file__).resolve().parent.parent


def fashion_mnist(folder: Path) -> torch.utils.data.TensorDataset:
    """The 60,000 training images, scaled to mean 0 and deviation 1, with their labels."""
    images = torch.tensor(read_idx(folder / "train-images-idx3-ubyte.gz")).float() / 255
    labels = torch.tensor(read_idx(folder / "train-labels-idx1-ubyte.gz")).long()
    images = (images - images.mean()) / images.std()
    return torch.utils.data.TensorDataset(images.unsqueeze(1), labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "notebook.png")
    arguments = parser.parse_args()
    train_set = fashion_mnist(arguments.data_dir)
    torch.manual_seed(0)
    started = time.perf_counter()

    # shown in README.md
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True)

    outcome = lrfind.find_lr(model, optimizer, torch.nn.functional.cross_entropy, loader)
    outcome.plot()  # the figure below: Jupyter shows it as the cell's value
    outcome.suggestions()  # every suggestion method's rates, the chosen one marked
    # shown in README.md

    seconds = time.perf_counter() - started
    figure = outcome.plot()
    figure.savefig(arguments.out)
    print(outcome.suggestions().to_string(float_format=lambda value: f"{value:.3g}"))
    print(f"\n{outcome.steps_run} training steps in {seconds:.1f} s; wrote {arguments.out}")


if __name__ == "__main__":
    main()
