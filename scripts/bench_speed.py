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
plus lrfind's default plan (`--repeats 5`, repeats one after another and stacked),
`lrfind --help` start-up, and

  (h) the headline as a user types it, `lrfind run --model lenet --dataset fashion-mnist`
      (every default: the full sweep and its repeats, data found in the system folder,
      progress on stderr), process start to result.json, against (b) in the same runs.
      Goal (issue 16): h/b <= 1.0. `--part headline` runs only (h) and (b), alternating.

Stacked repeats (lrfind.engine.stacked) are also timed in one process, on the sweep engines alone:
one sweep (K=1), five sweeps one after another, and five stacked into one run, all over the
same 40 calm steps (no divergence, so every copy runs every step). The target is stacked K=5
<= 1.5 x K=1 on a GPU; `--device cuda` runs everything there.

lrfind's sources are byte-compiled before the timed runs, as pip does at install (the peer's
were at its install): under PYTHONDONTWRITEBYTECODE an editable checkout would otherwise
compile its changed modules again at every start, a cost the peer does not pay.

Both sweeps stop at divergence, so they can run different step counts: steps and time per
step are printed beside the totals. torch-lr-finder is installed only for this benchmark,
into `.bench/peer` (not the project's environment), by `--install-peer`.

Big models and long curves (`--part memory`, `--part analyze`; `--part all` runs everything):

- memory: an MLP (784 -> width -> width -> 10, Adam, batch 8) at three widths, the largest
  with 4.5 GB of state. Each contender runs in a fresh process, from the same state mid-training
  (a warm-up step, so gradients and Adam's moments exist and a snapshot holds all of it):
  a plain training loop of the same steps and LRs, and `range_test` with the snapshot in each
  place. Peak resident memory is the process's VmHWM (GPU: torch's peak allocated bytes);
  ms per step is the steady state (first to last step) against the plain loop, the floor.
  Goals: peak <= 1.05 x the loop's on CPU (disk snapshot), GPU peak <= 1.02 x with the CPU
  snapshot, ms per step within 5% of the loop's.
- analyze: `python -m lrfind analyze` on sweep-shaped curves of 1e3, 1e5 and 1e6 rows, wall
  time and peak resident memory of that process. Goal: 1e6 rows in under 2 s and 200 MB.
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
from lrfind.core.settings import SweepSettings
from lrfind.engine.stacked import stacked_range_tests
from lrfind.engine.finder import range_test

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


MEMORY_SCRIPT = """
import sys, time
import torch
sys.path.insert(0, {root!r})
from torch import nn
from lrfind.engine.finder import range_test

device = torch.device({device!r})
width, contender, steps, warm, batch = {width}, {contender!r}, {steps}, {warm}, {batch}
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                      nn.Linear(width, 10)).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
loss_fn = nn.functional.cross_entropy
inputs = torch.randn(warm + steps, batch, 784, device=device)
targets = torch.randint(0, 10, (warm + steps, batch), device=device)
for step in range(warm):  # mid-training: gradients and Adam's moments exist
    optimizer.zero_grad()
    loss_fn(model(inputs[step]), targets[step]).backward()
    optimizer.step()
batches = [(inputs[warm + step], targets[warm + step]) for step in range(steps)]
stamps = []

def tick(_record=None):
    if device.type == "cuda":
        torch.cuda.synchronize()
    stamps.append(time.perf_counter())

if device.type == "cuda":
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
started = time.perf_counter()
place = "-"
if contender == "train":
    lrs = [1e-4 * 100 ** (step / (steps - 1)) for step in range(steps)]
    for step, (x, y) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = lrs[step]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
        tick()
else:
    result = range_test(model, optimizer, loss_fn, batches, start_lr=1e-4, end_lr=1e-2,
                        steps=steps, divergence_factor=1e9, snapshot=contender, callback=tick,
                        device=device)
    place = result.snapshot.place
    if len(result.records) != steps:
        raise SystemExit(f"the sweep stopped after {{len(result.records)}} steps")
if device.type == "cuda":
    torch.cuda.synchronize()
total = time.perf_counter() - started
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
gpu_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
step_s = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
state = sum(p.numel() * p.element_size() for p in model.parameters()) * 4
print("RESULT", int(status) * 1024, gpu_peak, total, step_s, state, place)
"""
MEMORY_WIDTHS = (1024, 4096, 16384)  # 1.8M, 20M and 281M parameters; 30 MB, 0.3 and 4.5 GB
MEMORY_STEPS, MEMORY_WARM, MEMORY_BATCH = 10, 1, 8  # the peak is the state; the steps are few


def memory_run(width: int, contender: str, device: str) -> dict[str, float | str]:
    script = MEMORY_SCRIPT.format(root=str(ROOT), device=device, width=width,
                                  contender=contender, steps=MEMORY_STEPS, warm=MEMORY_WARM,
                                  batch=MEMORY_BATCH)  # fmt: skip
    _, output = run([sys.executable, "-c", script])
    for line in output.splitlines():
        if line.startswith("RESULT"):
            rss, gpu, total, step, state, place = line.split()[1:]
            return {"rss": float(rss), "gpu": float(gpu), "total": float(total),
                    "step": float(step), "state": float(state), "place": place}  # fmt: skip
    raise RuntimeError(f"no RESULT line in:\n{output[-2000:]}")


def memory_tables(runs: int, device: str) -> None:
    """Peak memory and ms per step by model size: the loop, then each snapshot place."""
    places = ("auto", "cpu") if device == "cpu" else ("auto", "device")  # auto: disk, cpu
    contenders = ("train", *places)
    results: dict[tuple[int, str], list[dict[str, float | str]]] = {}
    for index in range(runs):  # alternating: drift hits every contender alike
        for width in MEMORY_WIDTHS:
            for contender in contenders:
                results.setdefault((width, contender), []).append(
                    memory_run(width, contender, device)
                )
        print(f"memory run {index + 1}/{runs} done", file=sys.stderr)
    peak = "gpu" if device == "cuda" else "rss"
    unit = "GPU peak allocated" if device == "cuda" else "peak resident (VmHWM)"
    print(f"\nMLP 784-w-w-10, Adam, batch {MEMORY_BATCH}, {MEMORY_STEPS} steps after "
          f"{MEMORY_WARM} warm-up steps, median of {runs}; device {device}\n")  # fmt: skip
    print(
        f"| width | parameters+grads+moments | contender | snapshot | {unit} MiB | x loop "
        "| ms/step | x loop | wall s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for width in MEMORY_WIDTHS:
        loop = results[(width, "train")]
        loop_peak, loop_step = median(loop, peak), median(loop, "step")
        for contender in contenders:
            rows = results[(width, contender)]
            name = "training loop" if contender == "train" else f"range_test snapshot={contender}"
            memory, step = median(rows, peak), median(rows, "step")
            print(f"| {width} | {median(rows, 'state') / 2**20:.0f} MiB | {name} | "
                  f"{rows[0]['place']} | {memory / 2**20:.0f} | {memory / loop_peak:.3f} | "
                  f"{1000 * step:.1f} | {step / loop_step:.3f} | "
                  f"{median(rows, 'total'):.1f} |")  # fmt: skip


ANALYZE_ROWS = (1_000, 100_000, 1_000_000)


def sweep_shaped_csv(path: Path, rows: int) -> None:
    """A long sweep as lrfind writes it: an exponential ramp, a fall, noise, a blow-up."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = np.linspace(-7.0, 1.0, rows)
    loss = 2.3 - 2.0 / (1 + np.exp(-(x + 3) * 2)) + np.where(x > -0.5, (x + 0.5) ** 2 * 20, 0)
    loss += rng.normal(0, 0.05, rows)
    lines = ["repeat,step,lr,loss,smoothed_loss,val_loss"]
    lines += [f"0,{step},{lr!r},{value!r},," for step, (lr, value)
              in enumerate(zip((10.0**x).tolist(), loss.tolist(), strict=True))]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


ANALYZE_SCRIPT = """
import atexit, runpy, sys
def peak():  # this process's own high-water mark (ru_maxrss would count the parent's, pre-exec)
    status = open("/proc/self/status").read()
    print("VMHWM", int(status.split("VmHWM:")[1].split()[0]) * 1024, file=sys.stderr)
atexit.register(peak)
sys.argv = ["lrfind", "analyze", {path!r}, "--out", {out!r}]
runpy.run_module("lrfind", run_name="__main__", alter_sys=True)
"""


def analyze_run(path: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak resident bytes of one `lrfind analyze` process."""
    script = ANALYZE_SCRIPT.format(path=str(path), out=str(out))
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                              text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    peaks = [line.split()[1] for line in finished.stderr.splitlines() if line.startswith("VMHWM")]
    if finished.returncode != 0 or not peaks:
        raise RuntimeError(f"lrfind analyze {path} failed: {finished.stderr[-2000:]}")
    return seconds, float(peaks[-1])


def analyze_table(runs: int, scratch: Path) -> None:
    curves = {rows: scratch / f"curve-{rows}.csv" for rows in ANALYZE_ROWS}
    for rows, path in curves.items():
        sweep_shaped_csv(path, rows)
    results: dict[int, list[tuple[float, float]]] = {rows: [] for rows in ANALYZE_ROWS}
    for index in range(runs):
        for rows, path in curves.items():
            results[rows].append(analyze_run(path, scratch / f"out-{rows}-{index}"))
    print(f"\n`lrfind analyze` by curve length, median of {runs}:\n")
    print("| rows | wall s | peak resident MiB | s per 1e6 rows beyond the 1e3 run |")
    print("| --- | --- | --- | --- |")
    smallest = ANALYZE_ROWS[0]
    base = statistics.median(seconds for seconds, _ in results[smallest])
    for rows in ANALYZE_ROWS:
        seconds = statistics.median(seconds for seconds, _ in results[rows])
        memory = statistics.median(peak for _, peak in results[rows])
        extra = "-" if rows == smallest else f"{(seconds - base) * 1e6 / (rows - smallest):.2f}"
        print(f"| {rows:.0e} | {seconds:.2f} | {memory / 2**20:.0f} | {extra} |")
    print("goal: 1e6 rows in under 2 s and 200 MB, linear in between")


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
    return timed_run(command, out)


def timed_run(command: list[str], out: Path) -> dict[str, float]:
    """Run one `lrfind run` command; its wall time, sweep seconds and the steps it trained
    (the sweeps the plan set aside included, as the sweep seconds include them)."""
    seconds, _ = run(command)
    document = json.loads((out / "result.json").read_text())
    return {
        "total": seconds,
        "sweep": document["timings"]["sweep_s"],
        "steps": document["steps_total"] + document.get("steps_set_aside", 0),
    }


HEADLINE = ("run", "--model", "lenet", "--dataset", "fashion-mnist")


def headline_run(scratch: Path, device: str) -> dict[str, float]:
    """The headline command with every default; only --out (a fresh folder) is added, and
    --device when it is not the CPU (the default, auto, picks a GPU when there is one)."""
    out = scratch / f"headline-{time.perf_counter_ns()}"
    extra = [] if device == "cpu" else ["--device", device]
    command = [str(Path(sys.executable).parent / "lrfind"), *HEADLINE, "--out", str(out), *extra]
    return timed_run(command, out)


def byte_compile_lrfind() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "lrfind")], check=True)


def headline_table(runs: int, scratch: Path, root: Path, device: str) -> None:
    """(h) against (b), alternating in one invocation (which goes first alternates too)."""
    headline: list[dict[str, float]] = []
    peer: list[dict[str, float]] = []
    for index in range(runs):
        if index % 2:
            peer.append(peer_run(scratch, root, device))
            headline.append(headline_run(scratch, device))
        else:
            headline.append(headline_run(scratch, device))
            peer.append(peer_run(scratch, root, device))
        print(f"headline run {index + 1}/{runs} done", file=sys.stderr)
    print(f"\nThe headline against torch-lr-finder, {runs} alternating runs each, median; "
          f"{os.cpu_count()} CPU cores; device {device}\n")  # fmt: skip
    print("| contender | end to end s | sweep s | outside the sweep s | steps | sweep ms/step |")
    print("| --- | --- | --- | --- | --- | --- |")
    _headline_rows(headline, peer)


def _headline_rows(headline: list[dict[str, float]], peer: list[dict[str, float]]) -> None:
    for name, results in (
        ("(h) lrfind run --model lenet --dataset fashion-mnist", headline),
        ("(b) torch-lr-finder + torchvision", peer),
    ):
        total, sweep, steps = (median(results, key) for key in ("total", "sweep", "steps"))
        outside = statistics.median(row["total"] - row["sweep"] for row in results)
        print(f"| {name} | {total:.2f} | {sweep:.2f} | {outside:.2f} | {steps:.0f} | "
              f"{1000 * sweep / steps:.1f} |")  # fmt: skip
    ratios = sorted(h["total"] / b["total"] for h, b in zip(headline, peer, strict=True))
    print(f"\nh/b end to end: {median(headline, 'total') / median(peer, 'total'):.2f} "
          f"(ratios of the pairs: {', '.join(f'{ratio:.2f}' for ratio in ratios)}; "
          "goal <= 1.0)")  # fmt: skip


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


def median(rows: list[dict[str, float]] | list[dict[str, float | str]], key: str) -> float:
    return statistics.median(float(row[key]) for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--install-peer", action="store_true", help="install torch-lr-finder")
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for every contender")
    parser.add_argument("--part", default="all",
                        choices=("all", "sweep", "headline", "memory", "analyze"),
                        help="sweep: the tables against the peer and the floor; headline: the "
                        "headline command against the peer only; memory: by model size; "
                        "analyze: by curve length")  # fmt: skip
    arguments = parser.parse_args()
    if arguments.part in ("all", "memory"):
        memory_tables(arguments.runs, arguments.device)
    if arguments.part in ("all", "analyze"):
        with tempfile.TemporaryDirectory() as folder:
            analyze_table(arguments.runs, Path(folder))
    if arguments.part not in ("all", "sweep", "headline"):
        return 0
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

    byte_compile_lrfind()
    if arguments.part == "headline":
        with tempfile.TemporaryDirectory() as folder:
            scratch = Path(folder)
            headline_table(arguments.runs, scratch, torchvision_root(scratch), arguments.device)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        root = torchvision_root(scratch)
        help_times = [run([str(Path(sys.executable).parent / "lrfind"), "--help"])[0]
                      for _ in range(arguments.runs)]  # fmt: skip
        device = arguments.device
        ours, peer, plan, plan_stacked, floor, stacks = [], [], [], [], [], []
        headline: list[dict[str, float]] = []
        for index in range(arguments.runs):  # interleaved, so drift hits all alike
            ours.append(lrfind_run(scratch, device, 0))
            peer.append(peer_run(scratch, root, device))
            headline.append(headline_run(scratch, device))
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
    print("\nThe headline command against (b), in the same runs:\n")
    print("| contender | end to end s | sweep s | outside the sweep s | steps | sweep ms/step |")
    print("| --- | --- | --- | --- | --- | --- |")
    _headline_rows(headline, peer)
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
