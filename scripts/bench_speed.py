"""How fast is lrfind? End to end against torch-lr-finder and a bare compute floor.

    .venv/bin/python scripts/bench_speed.py --install-peer   # once: torch-lr-finder, aside
    .venv/bin/python scripts/bench_speed.py --runs 5

Same machine, same model (lenet), same real Fashion-MNIST training split, batch 256, 100
planned steps from 1e-7 to 10, every contender in a fresh process, the median of `--runs`:

  (a) `lrfind run ... --repeats 0` (one sweep, as the peer does), process start to result.json;
  (b) torch-lr-finder with the standard torchvision pipeline (FashionMNIST + ToTensor +
      DataLoader), process start to its plot saved, in its own process;
  (c) the compute floor: the same forward/backward/step loop on preloaded normalised tensors,
      no logging and no analysis (its loop time only);
plus lrfind's default plan (`--repeats 5`, repeats one after another and stacked) and
`lrfind --help` start-up.

Stacked repeats (lrfind.engine.stacked) are also timed in one process, on the sweep engines alone:
one sweep (K=1), five sweeps one after another, and five stacked into one run, all over the
same 40 calm steps (no divergence, so every copy runs every step). The target is stacked K=5
<= 1.5 x K=1 on a GPU; `--device cuda` runs everything there.

Both sweeps stop at divergence, so they can run different step counts: steps and time per
step are printed beside the totals. torch-lr-finder is installed only for this benchmark,
into `.bench/peer` (not the project's environment), by `--install-peer`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = ROOT / ".bench" / "peer"
PEER_PACKAGES = ("torch-lr-finder==0.2.2", "tqdm")
DATA = Path("/usr/share/datasets/fashion-mnist")
BATCH = 256
STEPS = 100

PEER_SCRIPT = """
import sys, time
started = time.perf_counter()
import torch
from torch import nn
from torchvision import datasets, transforms
from torch_lr_finder import LRFinder
import matplotlib
matplotlib.use("Agg")
sys.path.insert(0, {root!r})
from lrfind.setup.models import lenet

torch.manual_seed(0)
dataset = datasets.FashionMNIST({data!r}, train=True, download=False,
                                transform=transforms.ToTensor())
loader = torch.utils.data.DataLoader(dataset, batch_size={batch}, shuffle=True)
model = lenet(1, 28, 28, 10)
optimizer = torch.optim.SGD(model.parameters(), lr=1e-7)
finder = LRFinder(model, optimizer, nn.CrossEntropyLoss(), device={device!r})
setup = time.perf_counter()
finder.range_test(loader, end_lr=10, num_iter={steps}, step_mode="exp")
swept = time.perf_counter()
axes, suggestion = finder.plot(suggest_lr=True, show_lr=None)
axes.figure.savefig({plot!r})
finder.reset()
done = time.perf_counter()
print("RESULT", len(finder.history["lr"]), setup - started, swept - setup, done - started)
"""

FLOOR_SCRIPT = """
import sys, time
import torch
sys.path.insert(0, {root!r})
from lrfind.setup import data
from lrfind.setup.models import lenet

device = torch.device({device!r})
loaded = data.load_builtin("fashion-mnist", {data!r}, allow_download=False)
images = loaded.images.to(device).float().sub_(loaded.mean).div_(loaded.std)
labels = loaded.labels.to(device)
torch.manual_seed(0)
order = torch.randperm(len(labels), device=device)
model = lenet(1, 28, 28, 10).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=1e-7)
loss_fn = torch.nn.CrossEntropyLoss()
lrs = [1e-7 * (1e8) ** (step / ({steps} - 1)) for step in range({steps})]
started = time.perf_counter()
for step in range({steps_run}):
    index = order[step * {batch}:(step + 1) * {batch}]
    for group in optimizer.param_groups:
        group["lr"] = lrs[step]
    optimizer.zero_grad(set_to_none=True)
    loss_fn(model(images[index]), labels[index]).backward()
    optimizer.step()
if device.type == "cuda":
    torch.cuda.synchronize()
print("RESULT", time.perf_counter() - started)
"""

STACK_SCRIPT = """
import dataclasses, sys
import torch
sys.path.insert(0, {root!r})
from torch import nn
from lrfind.setup import data, models
from lrfind.settings.options import SweepSettings
from lrfind.engine.stacked import stacked_range_tests
from lrfind.engine.range_test import range_test

device = torch.device({device!r})
loaded = data.load_builtin("fashion-mnist", {data!r}, allow_download=False)
loaded = dataclasses.replace(loaded, images=loaded.images.to(device),
                             labels=loaded.labels.to(device))
settings = SweepSettings(start_lr=1e-4, end_lr=1e-2, steps={steps}, divergence_factor=1e9)

def model(seed):
    return models.seeded_model("lenet", loaded.input_shape, 10, seed).to(device)

def sgd(tensors):
    return torch.optim.SGD(tensors, lr=1e-4)

def alone(seed):
    copy = model(seed)
    loader = data.TensorBatches(loaded, {batch}, seed, device)
    result = range_test(copy, sgd(copy.parameters()), nn.CrossEntropyLoss(), loader,
                        **dataclasses.asdict(settings), seed=seed, device=device)
    return result.sweep_seconds

def stacked(seeds):
    loaders = [data.TensorBatches(loaded, {batch}, seed, device) for seed in seeds]
    results = stacked_range_tests([model(seed) for seed in seeds], sgd, nn.CrossEntropyLoss(),
                                  loaders, settings, device=device, seed=seeds[0])
    return sum(result.sweep_seconds for result in results)

alone(99), stacked([98, 99])  # warm-up: first-step and kernel start-up costs
one = alone(0)
one_by_one = sum(alone(seed) for seed in range(1, 6))
together = stacked(list(range(1, 6)))
print("RESULT", one, one_by_one, together)
"""


def result_line(output: str) -> list[float]:
    for line in output.splitlines():
        if line.startswith("RESULT"):
            return [float(value) for value in line.split()[1:]]
    raise RuntimeError(f"no RESULT line in:\n{output[-2000:]}")


def run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    finished = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stderr[-3000:]}")
    return seconds, finished.stdout


def lrfind_run(scratch: Path, device: str, repeats: int, *extra: str) -> dict[str, float]:
    out = scratch / f"lrfind-{repeats}-{time.perf_counter_ns()}"
    command = [
        str(Path(sys.executable).parent / "lrfind"), "run", "--model", "lenet",
        "--dataset", "fashion-mnist", "--data-dir", str(DATA), "--no-download",
        "--batch-size", str(BATCH), "--steps", str(STEPS), "--repeats", str(repeats),
        "--device", device, "--quiet", "--out", str(out), *extra,
    ]  # fmt: skip
    seconds, _ = run(command)
    document = json.loads((out / "result.json").read_text())
    return {
        "total": seconds,
        "sweep": document["timings"]["sweep_s"],
        "steps": document["steps_total"],
    }


def torchvision_root(scratch: Path) -> Path:
    """FashionMNIST/raw/ with the uncompressed files, as torchvision leaves them after a
    download (preparing them is not timed: a torchvision user already has them)."""
    raw = scratch / "torchvision" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for packed in DATA.glob("*-ubyte.gz"):
        with gzip.open(packed) as source, (raw / packed.stem).open("wb") as target:
            shutil.copyfileobj(source, target)
    return raw.parent.parent


def peer_run(scratch: Path, root: Path, device: str) -> dict[str, float]:
    script = PEER_SCRIPT.format(root=str(ROOT), data=str(root), batch=BATCH, steps=STEPS,
                                plot=str(scratch / "peer.png"), device=device)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PEER_DIR)}
    seconds, output = run([sys.executable, "-c", script], env)
    steps, setup, sweep, _ = result_line(output)
    return {"total": seconds, "sweep": sweep, "setup": setup, "steps": steps}


def floor_run(steps_run: int, device: str) -> dict[str, float]:
    script = FLOOR_SCRIPT.format(root=str(ROOT), data=str(DATA), batch=BATCH, steps=STEPS,
                                 steps_run=steps_run, device=device)  # fmt: skip
    _, output = run([sys.executable, "-c", script])
    return {"sweep": result_line(output)[0], "steps": steps_run}


STACK_STEPS = 40


def stack_run(device: str) -> dict[str, float]:
    script = STACK_SCRIPT.format(root=str(ROOT), data=str(DATA), batch=BATCH, steps=STACK_STEPS,
                                 device=device)  # fmt: skip
    _, output = run([sys.executable, "-c", script])
    one, one_by_one, stacked = result_line(output)
    return {"one": one, "one_by_one": one_by_one, "stacked": stacked}


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--install-peer", action="store_true", help="install torch-lr-finder")
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for every contender")
    arguments = parser.parse_args()
    if arguments.install_peer:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(PEER_DIR), *PEER_PACKAGES],
            check=True,
        )  # fmt: skip
    if not (PEER_DIR / "torch_lr_finder").is_dir():
        print("torch-lr-finder is not installed for the benchmark; run with --install-peer.")
        return 2
    if not (DATA / "train-images-idx3-ubyte.gz").is_file():
        print(f"real Fashion-MNIST not found in {DATA}: apt-get install dataset-fashion-mnist")
        return 2

    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        root = torchvision_root(scratch)
        help_times = [run([str(Path(sys.executable).parent / "lrfind"), "--help"])[0]
                      for _ in range(arguments.runs)]  # fmt: skip
        device = arguments.device
        ours, peer, plan, plan_stacked, floor, stacks = [], [], [], [], [], []
        for index in range(arguments.runs):  # interleaved, so drift hits all alike
            ours.append(lrfind_run(scratch, device, 0))
            peer.append(peer_run(scratch, root, device))
            floor.append(floor_run(int(ours[-1]["steps"]), device))
            plan.append(lrfind_run(scratch, device, 5, "--stack-repeats", "off"))
            plan_stacked.append(lrfind_run(scratch, device, 5, "--stack-repeats", "on"))
            stacks.append(stack_run(device))
            print(f"run {index + 1}/{arguments.runs} done", file=sys.stderr)

    a, b = median(ours, "total"), median(peer, "total")
    a_sweep, c_sweep = median(ours, "sweep"), median(floor, "sweep")
    cores = os.cpu_count()
    print(f"\nLeNet, Fashion-MNIST, batch {BATCH}, {STEPS} planned steps, {arguments.runs} runs")
    print(f"each, median; {cores} CPU cores; device {arguments.device}\n")
    print("| contender | end to end s | sweep s | steps | sweep ms/step |")
    print("| --- | --- | --- | --- | --- |")
    rows = [
        ("(a) lrfind run --repeats 0", ours),
        ("(b) torch-lr-finder + torchvision", peer),
        ("(c) compute floor (same steps as a)", floor),
        ("lrfind run (default plan, 5 repeats one by one)", plan),
        ("lrfind run (default plan, 5 repeats stacked)", plan_stacked),
    ]
    for name, results in rows:
        total = f"{median(results, 'total'):.2f}" if "total" in results[0] else "-"
        sweep, steps = median(results, "sweep"), median(results, "steps")
        print(f"| {name} | {total} | {sweep:.2f} | {steps:.0f} | {1000 * sweep / steps:.1f} |")
    print(f"\na/b end to end: {a / b:.2f} (target <= 0.5)")
    print(f"a/c sweep phase: {a_sweep / c_sweep:.2f} (target <= 1.1)")
    print(f"lrfind --help: median {statistics.median(help_times):.2f} s (target < 0.5)")
    one = median(stacks, "one")
    print(f"\nRepeats, sweep engines only, {STACK_STEPS} steps each (K=1: {one:.2f} s):")
    print("| repeats | sweep s | x K=1 |")
    print("| --- | --- | --- |")
    for name, key in (("K=5 one after another", "one_by_one"), ("K=5 stacked", "stacked")):
        seconds = median(stacks, key)
        print(f"| {name} | {seconds:.2f} | {seconds / one:.2f} |")
    print("stacked K=5 target on a GPU: <= 1.5 x K=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
