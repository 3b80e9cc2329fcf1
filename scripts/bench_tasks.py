"""The benchmark tasks of scripts/bench_quality.py: data, models, losses, optimizers, budgets.

    from bench_tasks import build_tasks
    tasks = build_tasks()             # name -> Task, data loaded lazily on first use
    model = tasks["finetune"].model(seed=0)

A Task is everything a sweep and a training run need, so that the grid, the alternatives and
lrfind's sweeps all read one description: how to build the model (seeded), the batches (seeded
order), the loss (None when the model computes its own), the optimizer at a given LR, the
training budget and schedule of the ground truth, and how to score the result.

Budgets. The four original configs train 2 full epochs of Fashion-MNIST. Every family added
for issue 16 is sized so that ONE training run takes a few seconds on one torch thread
(subsets, few epochs, small widths), so that a family's whole grid (about 16 points x 2 seeds)
costs minutes, not hours (run times: docs/quality.md).
"""

from __future__ import annotations

import dataclasses
import math
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrfind.engine.trainer import EvaluationSet, evaluate
from lrfind.setup import data as datasets
from lrfind.setup.models import build_model, load_weights

CACHE_DIR = Path(__file__).resolve().parent.parent / ".bench"  # ignored by git
GRID_STEP_DECADES = 0.25

ModelBuilder = Callable[[int], nn.Module]
BatchesBuilder = Callable[[int], Any]  # seed -> a sized, re-iterable source of batches
OptimizerBuilder = Callable[[nn.Module, float], torch.optim.Optimizer]
ScheduleBuilder = Callable[[torch.optim.Optimizer, float, int], Any]  # (opt, peak lr, steps)


@dataclass(frozen=True)
class Task:
    """One benchmark config. `score` is test accuracy (higher is better) or a test loss (lower
    is better); `chance` is the score of a model that learned nothing, given to diverged runs
    and to methods that give no answer."""

    name: str
    description: str
    model: ModelBuilder
    batches: BatchesBuilder
    loss_fn: Any  # a loss callable, or None: the model computes its own loss from labels
    optimizer: OptimizerBuilder
    optimizer_family: str  # "sgd" or "adam": which schedule-free variant a user would pick
    weight_decay: float  # the config's own, given to the alternatives too
    epochs: int
    schedule: ScheduleBuilder  # the ground truth's schedule around the grid's peak LR
    schedule_name: str
    evaluation: Callable[[], EvaluationSet]
    score_name: str  # "test accuracy", "test MSE", "validation loss (nats/byte)"
    higher_is_better: bool
    chance: float
    grid_log10: tuple[float, float]  # lowest and highest log10(peak lr) of the first grid
    held_out: bool  # not used to choose any rule: only measured
    group: str = "original"  # the bench's table groups: original, family, batch, length

    def grid(self) -> list[float]:
        low, high = self.grid_log10
        count = round((high - low) / GRID_STEP_DECADES) + 1
        return [round(low + GRID_STEP_DECADES * index, 2) for index in range(count)]

    def score(self, model: nn.Module) -> float:
        """The test score, clamped at chance: a broken model (NaN, or worse than predicting
        nothing) scores as one that learned nothing, so grids stay finite."""
        loss, accuracy = evaluate(model, self.loss_fn, self.evaluation())
        value = accuracy if self.higher_is_better else loss
        if value is None or not math.isfinite(value):
            return self.chance
        return max(value, self.chance) if self.higher_is_better else min(value, self.chance)


# ---------------------------------------------------------------------------------------------
# Schedules of the ground truth (the grid's LR is the peak)


def onecycle(optimizer: torch.optim.Optimizer, peak: float, steps: int) -> Any:
    """torch's OneCycleLR defaults, momentum not cycled (training uses the swept optimizer)."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak, total_steps=steps, cycle_momentum=False
    )


def warmup_cosine(optimizer: torch.optim.Optimizer, peak: float, steps: int) -> Any:
    """Linear warm-up over the first 10% of steps to `peak`, then cosine decay to peak/10: the
    usual language-model recipe."""
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)  # built at lr=peak


# ---------------------------------------------------------------------------------------------
# Batches


class ShuffledBatches:
    """Mini-batches of in-memory tensors, a new seeded permutation every pass, the incomplete
    last batch dropped (as lrfind's TensorBatches does for images)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int):
        self.inputs, self.targets, self.batch_size = inputs, targets, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.targets) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.targets), generator=self.generator)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.inputs[index], self.targets[index]


class TextWindows:
    """`steps` dict batches per pass of random windows of a byte text:
    {"input_ids": (B, T) bytes, "labels": (B, T) the byte after each}; the model computes its
    own loss from `labels`, as Hugging Face causal LMs do (here already shifted)."""

    def __init__(
        self, tokens: torch.Tensor, batch_size: int, context: int, steps: int, seed: int
    ) -> None:
        self.tokens, self.batch_size, self.context, self.steps = tokens, batch_size, context, steps
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        offsets = torch.arange(self.context + 1)
        for _ in range(self.steps):
            starts = torch.randint(
                0, len(self.tokens) - self.context - 1, (self.batch_size,), generator=self.generator
            )
            windows = self.tokens[starts[:, None] + offsets]
            yield {"input_ids": windows[:, :-1], "labels": windows[:, 1:]}


# ---------------------------------------------------------------------------------------------
# Models


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers and an identity (or 1x1 conv-BN) shortcut, as in ResNet."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                nn.BatchNorm2d(channels_out),
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(inputs) + self.shortcut(inputs))


def small_resnet(width: int = 8, num_classes: int = 10) -> nn.Module:
    """A 7-layer residual net with batch norm; the stride-2 stem (28 -> 14 pixels) keeps a run
    within the budget on one CPU thread."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, 2, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        ResidualBlock(width, width, 1),
        ResidualBlock(width, 2 * width, 2),
        ResidualBlock(2 * width, 4 * width, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


def regression_mlp(features: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(features, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1)
    )


class CharTransformer(nn.Module):
    """A pre-norm causal transformer over bytes. Given `labels` it returns {"loss", "logits"}
    (its own cross-entropy); without them, {"logits"}."""

    def __init__(self, context: int, width: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(256, width)
        self.position = nn.Parameter(torch.randn(context, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 256)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context))

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        length = input_ids.shape[1]
        hidden = self.embedding(input_ids) + self.position[:length]
        hidden = self.body(hidden, mask=self.mask[:length, :length], is_causal=True)
        logits = self.head(self.norm(hidden))
        if labels is None:
            return {"logits": logits}
        loss = nn.functional.cross_entropy(logits.reshape(-1, 256), labels.reshape(-1))
        return {"loss": loss, "logits": logits}


def seeded(build: Callable[[], nn.Module]) -> ModelBuilder:
    """The model with initial weights from `torch.manual_seed(seed)`: the original bench's way,
    kept so that its cached grid still describes the same runs."""

    def model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build()

    return model


# ---------------------------------------------------------------------------------------------
# Optimizers


def sgd(momentum: float = 0.0, weight_decay: float = 0.0) -> OptimizerBuilder:
    def build(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )

    return build


def torch_optimizer(name: str, **options: Any) -> OptimizerBuilder:
    """Any torch.optim class by name, at its defaults but for the LR and `options`."""

    def build(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return getattr(torch.optim, name)(model.parameters(), lr=lr, **options)  # type: ignore[no-any-return]

    return build


def adam(weight_decay: float = 0.0) -> OptimizerBuilder:
    """Adam without weight decay, AdamW (decoupled) with it."""

    def build(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        if weight_decay:
            return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        return torch.optim.Adam(model.parameters(), lr=lr)

    return build


# ---------------------------------------------------------------------------------------------
# Data, loaded once and only when a task needs it


class Data:
    """Fashion-MNIST, the regression set and the text, each built on first use."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def once(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def fashion(self) -> tuple[datasets.ImageData, datasets.ImageData]:
        return self.once(  # type: ignore[no-any-return]
            "fashion",
            lambda: (
                datasets.load_builtin("fashion-mnist", allow_download=False),
                datasets.load_builtin("fashion-mnist", allow_download=False, split="test"),
            ),
        )

    def fashion_test(self, count: int | None = None, classes: range | None = None) -> EvaluationSet:
        """The test split normalised with the training statistics; optionally the first `count`
        images, or only `classes` (relabelled from 0)."""

        def build() -> EvaluationSet:
            train, test = self.fashion()
            part = subset(test, classes, count)
            images = part.images.float().sub_(train.mean).div_(train.std)
            return EvaluationSet(images, part.labels)

        return self.once(f"fashion-test-{count}-{classes}", build)  # type: ignore[no-any-return]

    def fashion_train(
        self, count: int | None = None, classes: range | None = None
    ) -> datasets.ImageData:
        return self.once(  # type: ignore[no-any-return]
            f"fashion-train-{count}-{classes}", lambda: subset(self.fashion()[0], classes, count)
        )


def subset(
    data: datasets.ImageData, classes: range | None, count: int | None
) -> datasets.ImageData:
    """The images of `classes` (labels shifted to start at 0), the first `count` of them, with
    the full set's normalisation statistics."""
    images, labels = data.images, data.labels
    num_classes = data.num_classes
    if classes is not None:
        keep = (labels >= classes.start) & (labels < classes.stop)
        images, labels = images[keep], labels[keep] - classes.start
        num_classes = len(classes)
    if count is not None:
        images, labels = images[:count], labels[:count]
    return dataclasses.replace(data, images=images, labels=labels, num_classes=num_classes)


def image_batches(data: Callable[[], datasets.ImageData], batch_size: int) -> BatchesBuilder:
    def batches(seed: int) -> datasets.TensorBatches:
        return datasets.TensorBatches(data(), batch_size, seed, torch.device("cpu"))

    return batches


# Regression: a fixed random teacher network on Gaussian inputs, plus noise.
REGRESSION_FEATURES = 16
REGRESSION_TRAIN, REGRESSION_TEST = 8192, 4096
REGRESSION_NOISE = 0.1  # in units of the teacher's output standard deviation


def regression_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs and targets, train then test, from their own generator (seed 1234): the same on
    every machine and independent of the runs' seeds."""
    generator = torch.Generator().manual_seed(1234)
    teacher = [
        torch.randn(REGRESSION_FEATURES, 64, generator=generator) / REGRESSION_FEATURES**0.5,
        torch.randn(64, 1, generator=generator) / 8.0,
    ]
    inputs = torch.randn(
        REGRESSION_TRAIN + REGRESSION_TEST, REGRESSION_FEATURES, generator=generator
    )
    clean = torch.tanh(inputs @ teacher[0]) @ teacher[1]
    clean = (clean - clean.mean()) / clean.std()
    targets = clean + REGRESSION_NOISE * torch.randn(clean.shape, generator=generator)
    return (
        inputs[:REGRESSION_TRAIN],
        targets[:REGRESSION_TRAIN],
        inputs[REGRESSION_TRAIN:],
        targets[REGRESSION_TRAIN:],
    )


# Text: a fixed list of standard-library modules present in every CPython 3.
TEXT_FILES = (
    "argparse.py", "bisect.py", "calendar.py", "csv.py", "dataclasses.py", "fractions.py",
    "functools.py", "heapq.py", "shutil.py", "textwrap.py",
)  # fmt: skip
TEXT_VALIDATION_FRACTION = 0.1  # the end of the text, never trained on
CONTEXT = 64


def stdlib_text() -> torch.Tensor:
    """The bytes of TEXT_FILES in sorted order, as int64 tokens (about 400 KB)."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    raw = b"".join((folder / name).read_bytes() for name in sorted(TEXT_FILES))
    return torch.tensor(list(raw), dtype=torch.int64)


def text_validation(tokens: torch.Tensor) -> EvaluationSet:
    """Every non-overlapping window of the held-out end, in dict batches of 64."""
    held_out = tokens[int(len(tokens) * (1 - TEXT_VALIDATION_FRACTION)) :]
    count = (len(held_out) - 1) // CONTEXT
    inputs = held_out[: count * CONTEXT].view(count, CONTEXT)
    labels = held_out[1 : count * CONTEXT + 1].view(count, CONTEXT)
    batches = tuple(
        {"input_ids": inputs[start : start + 64], "labels": labels[start : start + 64]}
        for start in range(0, count, 64)
    )
    return EvaluationSet(given=batches)


def text_training(tokens: torch.Tensor) -> torch.Tensor:
    return tokens[: int(len(tokens) * (1 - TEXT_VALIDATION_FRACTION))]


# Fine-tuning: LeNet trained once on classes 0-4, then fine-tuned on classes 5-9.
PRETRAIN_SEED = 0
PRETRAIN_EPOCHS = 2


def pretrained_weights(data: Data) -> Path:
    """LeNet (5 outputs) trained with Adam 1e-3 for PRETRAIN_EPOCHS on Fashion-MNIST classes
    0-4, seed PRETRAIN_SEED; trained once and kept in .bench/, so every run starts from it."""
    from lrfind.engine.trainer import train_epochs  # only needed the first time

    path = CACHE_DIR / f"finetune-lenet-classes0-4-seed{PRETRAIN_SEED}.pt"
    if path.exists():
        return path
    torch.manual_seed(PRETRAIN_SEED)
    model = build_model("lenet", (1, 28, 28), 5)
    source = data.fashion_train(classes=range(0, 5))
    batches = datasets.TensorBatches(source, 128, PRETRAIN_SEED, torch.device("cpu"))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_epochs(model, optimizer, nn.CrossEntropyLoss(), batches, epochs=PRETRAIN_EPOCHS)
    CACHE_DIR.mkdir(exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(model.state_dict(), temporary)
    temporary.replace(path)
    return path


def finetune_model(data: Data) -> ModelBuilder:
    """Every run starts from the same pretrained weights (as `lrfind run --weights` does);
    the seed sets only the data order."""

    def model(seed: int) -> nn.Module:
        built = build_model("lenet", (1, 28, 28), 5)
        load_weights(built, pretrained_weights(data))
        return built

    return model


# ---------------------------------------------------------------------------------------------
# The configs


def build_tasks() -> dict[str, Task]:
    data = Data()
    cross_entropy = nn.CrossEntropyLoss()
    fashion_shape = (1, 28, 28)

    def fashion_model(spec: str) -> ModelBuilder:
        return seeded(lambda: build_model(spec, fashion_shape, 10))

    def classifier(
        name: str, description: str, model: ModelBuilder, batches: BatchesBuilder,
        optimizer: OptimizerBuilder, family: str, grid: tuple[float, float], *,
        epochs: int = 2, weight_decay: float = 0.0, held_out: bool = False,
        test: Callable[[], EvaluationSet] = data.fashion_test, classes: int = 10,
    ) -> Task:  # fmt: skip
        return Task(
            name, description, model, batches, cross_entropy, optimizer, family, weight_decay,
            epochs, onecycle, "one-cycle", test, "test accuracy", True, 1 / classes, grid,
            held_out,
        )  # fmt: skip

    full = data.fashion_train
    regression = lambda: data.once("regression", regression_data)  # noqa: E731
    tokens = lambda: data.once("text", stdlib_text)  # noqa: E731
    lm_steps = 150  # x 16 windows x 64 bytes: about 0.4 passes over the text, within the budget
    tasks = [
        # The original four; their grids were computed before issue 16 and stay valid.
        classifier("lenet-sgd-256", "LeNet, SGD, batch 256", fashion_model("lenet"),
                   image_batches(full, 256), sgd(), "sgd", (-3.0, 0.5)),
        classifier("mlp-sgd-32", "MLP 300-100, SGD, batch 32", fashion_model("mlp"),
                   image_batches(full, 32), sgd(), "sgd", (-3.0, 0.5)),
        classifier("lenet-adam-128", "LeNet, Adam, batch 128", fashion_model("lenet"),
                   image_batches(full, 128), adam(), "adam", (-4.5, -0.5)),
        classifier("cnn-momentum-128", "CNN, SGD momentum 0.9, batch 128",
                   fashion_model("cnn"), image_batches(full, 128), sgd(0.9), "sgd",
                   (-3.5, 0.5), held_out=True),
        # Issue 16's families, each run sized to a few seconds on one thread.
        classifier("resnet-bn-wd", "ResNet-7 BN width 8, SGD m0.9 wd 5e-4, batch 128, "
                   "2 epochs of 6,400 images", seeded(small_resnet),
                   image_batches(lambda: full(6_400), 128), sgd(0.9, 5e-4), "sgd",
                   (-2.0, 0.75), weight_decay=5e-4, held_out=True,
                   test=lambda: data.fashion_test(2_000)),
        classifier("adamw-large-batch", "MLP 300-100, AdamW wd 0.05, batch 1024, 3 epochs",
                   fashion_model("mlp"), image_batches(full, 1024), adam(0.05), "adam",
                   (-3.5, -0.75), epochs=3, weight_decay=0.05, held_out=True),
        classifier("small-batch-momentum", "LeNet, SGD m0.9, batch 16, 1 epoch of 10,000 "
                   "images", fashion_model("lenet"), image_batches(lambda: full(10_000), 16),
                   sgd(0.9), "sgd", (-3.25, -0.5), epochs=1),
        classifier("finetune", "LeNet pretrained on classes 0-4, AdamW wd 0.01, batch 64, "
                   "2 epochs of 5,000 images of classes 5-9", finetune_model(data),
                   image_batches(lambda: full(5_000, range(5, 10)), 64), adam(0.01), "adam",
                   (-4.5, -1.75), weight_decay=0.01, held_out=True, classes=5,
                   test=lambda: data.fashion_test(classes=range(5, 10))),
        Task("regression-mse", "MLP 128-128 on a noisy random teacher, 16 Gaussian "
             "features, MSE, Adam, batch 128, 4 epochs of 8,192",
             seeded(lambda: regression_mlp(REGRESSION_FEATURES)),
             lambda seed: ShuffledBatches(*regression()[:2], 128, seed), nn.MSELoss(),
             adam(), "adam", 0.0, 4, onecycle, "one-cycle",
             lambda: data.once("regression-test", lambda: EvaluationSet(*regression()[2:])),
             "test MSE", False, 1.0 + REGRESSION_NOISE**2, (-4.0, -0.5), False),
        Task("char-transformer", "byte-level transformer, 2 layers, d64, 4 heads, context 64, "
             f"AdamW wd 0.1, batch 16, {lm_steps} steps, stdlib text",
             seeded(lambda: CharTransformer(CONTEXT)),
             lambda seed: TextWindows(text_training(tokens()), 16, CONTEXT, lm_steps, seed),
             None, adam(0.1), "adam", 0.1, 1, warmup_cosine, "warm-up + cosine",
             lambda: data.once("text-validation", lambda: text_validation(tokens())),
             "validation loss (nats/byte)", False, math.log(256), (-3.5, -0.75), True),
    ]  # fmt: skip
    tasks += space_tasks(data, classifier, fashion_model("mlp"))
    return {task.name: task for task in tasks}


# Issue 24's space: one cheap model (the MLP 300-100) across every element-wise torch.optim
# family, batch sizes 16 to 1024 and training lengths 1 to 20 epochs. The split was declared
# here before any rule was tuned on these configs: TUNING chose the rule, the rest only
# measure it.
FAMILIES = {  # name: (torch.optim class, options, first grid in log10 peak lr)
    "sgd": ("SGD", {}, (-2.0, 0.75)),
    "momentum": ("SGD", {"momentum": 0.9}, (-3.0, -0.25)),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}, (-3.0, -0.25)),
    "adam": ("Adam", {}, (-4.0, -1.5)),
    "adamw": ("AdamW", {"weight_decay": 0.01}, (-4.0, -1.5)),
    "nadam": ("NAdam", {}, (-4.0, -1.5)),
    "radam": ("RAdam", {}, (-4.0, -1.0)),
    "adamax": ("Adamax", {}, (-3.5, -1.0)),
    "rmsprop": ("RMSprop", {}, (-4.5, -2.0)),
    "adagrad": ("Adagrad", {}, (-3.0, 0.0)),
    "adadelta": ("Adadelta", {}, (-1.5, 1.5)),
    "asgd": ("ASGD", {}, (-2.0, 0.75)),
}
TUNING = {
    "lenet-sgd-256", "mlp-sgd-32", "lenet-adam-128", "small-batch-momentum", "regression-mse",
    "mlp-sgd-64", "mlp-momentum-64", "mlp-adam-64", "mlp-rmsprop-64", "mlp-adagrad-64",
    "mlp-radam-64", "mlp-sgd-16", "mlp-sgd-1024", "mlp-adam-256", "mlp-sgd-128-1ep",
    "mlp-sgd-128-20ep", "mlp-adam-128-4ep",
}  # fmt: skip
LENGTH_IMAGES = 20_000  # the length configs train on this many images per epoch


def space_tasks(data: Data, classifier: Callable[..., Task], mlp: ModelBuilder) -> list[Task]:
    """The family, batch-size and length configs (names in TUNING tune the rule)."""
    tasks = []

    def add(name: str, description: str, family: str, batch_size: int, images: int | None,
            epochs: int, group: str) -> None:  # fmt: skip
        kind, options, grid = FAMILIES[family]
        optimizer = torch_optimizer(kind, **options)
        task = classifier(
            name,
            description,
            mlp,
            image_batches(lambda: data.fashion_train(images), batch_size),
            optimizer,
            "sgd" if kind in ("SGD", "ASGD") else "adam",
            grid,
            epochs=epochs,
            weight_decay=float(options.get("weight_decay", 0.0)),
            held_out=name not in TUNING,
        )
        tasks.append(dataclasses.replace(task, group=group))

    for family, (kind, options, _) in FAMILIES.items():
        shown = ", ".join(f"{key} {value}" for key, value in options.items())
        add(f"mlp-{family}-64", f"MLP 300-100, {kind}{' ' + shown if shown else ''}, batch 64, "
            "1 epoch", family, 64, None, 1, "family")  # fmt: skip
    for family in ("sgd", "adam"):
        for batch_size in (16, 256, 1024):
            add(f"mlp-{family}-{batch_size}", f"MLP 300-100, {FAMILIES[family][0]}, batch "
                f"{batch_size}, 1 epoch", family, batch_size, None, 1, "batch")  # fmt: skip
        for epochs in (1, 4, 20):
            add(f"mlp-{family}-128-{epochs}ep", f"MLP 300-100, {FAMILIES[family][0]}, batch 128, "
                f"{epochs} epochs of {LENGTH_IMAGES:,} images", family, 128, LENGTH_IMAGES,
                epochs, "length")  # fmt: skip
    return tasks
