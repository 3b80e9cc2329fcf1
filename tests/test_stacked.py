"""Stacked repeats: K copies trained as one must trace the K sweeps run one by one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lrfind import range_test
from lrfind.commands import run as pipeline
from lrfind.core.records import (
    STOP_COMPLETED,
    STOP_DIVERGED,
    STOP_INTERRUPTED,
    RangeTestResult,
    StepRecord,
)
from lrfind.engine.distributed import Ranks
from lrfind.engine.stacked import (
    GpuPeak,
    PerCopyLoss,
    memory_problem,
    stack_problem,
    stacked_range_tests,
)
from lrfind.errors import ConfigError, SweepError
from lrfind.settings.options import RunConfig
from tests.conftest import (
    CALM,
    CPU,
    assert_clean_failure,
    invoke,
    one_by_one,
    stacked,
    tiny_model,
    tiny_run_arguments,
    tiny_task,
)

OPTIMIZERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "sgd-momentum": lambda tensors: torch.optim.SGD(tensors, lr=1e-3, momentum=0.9),
    "adam": lambda tensors: torch.optim.Adam(tensors, lr=1e-3),
    "adamw-decay": lambda tensors: torch.optim.AdamW(tensors, lr=1e-3, weight_decay=0.1),
}


def batch_norm_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def assert_same_curves(
    together: list[RangeTestResult], alone: list[RangeTestResult], tolerance: float
) -> None:
    for joint, single in zip(together, alone, strict=True):
        assert joint.stop_reason == single.stop_reason
        assert len(joint.records) == len(single.records)
        np.testing.assert_array_equal(joint.lrs, single.lrs)
        np.testing.assert_allclose(joint.losses, single.losses, rtol=tolerance)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_stacked_copies_trace_their_one_by_one_sweeps(optimizer: str) -> None:
    models = [tiny_model(seed) for seed in range(3)]
    together = stacked(models, OPTIMIZERS[optimizer], CALM)
    alone = one_by_one(models, OPTIMIZERS[optimizer], CALM)
    assert_same_curves(together, alone, tolerance=1e-4)
    assert all(result.stop_reason == STOP_COMPLETED for result in together)
    curves = [tuple(result.losses[:3]) for result in together]
    assert len(set(curves)) == 3  # each copy had its own weights and batches


def test_the_models_given_are_left_unchanged() -> None:
    models = [tiny_model(seed) for seed in range(2)]
    before = [[parameter.clone() for parameter in model.parameters()] for model in models]
    stacked(models, OPTIMIZERS["sgd-momentum"], CALM)
    for model, saved in zip(models, before, strict=True):
        for parameter, original in zip(model.parameters(), saved, strict=True):
            assert torch.equal(parameter, original)


def test_a_copy_that_diverges_stops_alone_and_leaves_the_others_untouched() -> None:
    """Copy 1 trains on inputs 100x larger, so its gradients are and it blows up at a low
    LR; copies 0 and 2 must record what they record on their own, to the end of the range."""
    models = [tiny_model(seed) for seed in range(3)]
    loaders = [tiny_task(seed=index) for index in range(3)]
    loaders[1] = [(inputs * 100, targets) for inputs, targets in loaders[1]]
    together = stacked(models, OPTIMIZERS["sgd-momentum"], CALM, loaders)
    alone = one_by_one(models, OPTIMIZERS["sgd-momentum"], CALM, loaders)
    assert together[1].stop_reason == STOP_DIVERGED
    assert len(together[1].records) < CALM.steps
    assert [len(together[k].records) for k in (0, 2)] == [CALM.steps, CALM.steps]
    assert_same_curves(together, alone, tolerance=1e-4)


def test_batch_norm_copies_keep_their_own_running_statistics() -> None:
    models = [batch_norm_model(seed) for seed in range(2)]
    together = stacked(models, OPTIMIZERS["sgd-momentum"], CALM)
    alone = one_by_one(models, OPTIMIZERS["sgd-momentum"], CALM)
    assert_same_curves(together, alone, tolerance=1e-4)


def test_held_out_losses_and_accumulation_match_the_one_by_one_sweeps() -> None:
    models = [tiny_model(seed) for seed in range(2)]
    held_out = tiny_task(seed=9)[:2]
    options = {"val_batches": held_out, "accumulate": 2}
    together = stacked(models, OPTIMIZERS["adam"], CALM, **options)
    alone = one_by_one(models, OPTIMIZERS["adam"], CALM, **options)
    assert_same_curves(together, alone, tolerance=1e-4)
    for joint, single in zip(together, alone, strict=True):
        assert joint.val_losses is not None and single.val_losses is not None
        np.testing.assert_allclose(joint.val_losses, single.val_losses, rtol=1e-4)


def test_bf16_stacked_copies_follow_their_one_by_one_sweeps_to_bf16_precision() -> None:
    models = [tiny_model(seed) for seed in range(2)]
    together = stacked(models, OPTIMIZERS["sgd-momentum"], CALM, precision="bf16")
    alone = one_by_one(models, OPTIMIZERS["sgd-momentum"], CALM, precision="bf16")
    assert_same_curves(together, alone, tolerance=1e-2)  # bf16 keeps about 3 digits


def clipped_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A loss that reads a value out of a tensor, which vmap cannot batch."""
    loss = nn.functional.cross_entropy(outputs, targets)
    return loss if loss.item() < 100 else loss.clamp(max=100)


def test_losses_are_batched_where_vmap_can_and_looped_where_it_cannot() -> None:
    outputs, targets = torch.randn(3, 32, 3), torch.randint(0, 3, (3, 32))
    expected = [nn.functional.cross_entropy(outputs[k], targets[k]) for k in range(3)]
    for loss_fn, batched in ((nn.functional.cross_entropy, True), (clipped_cross_entropy, False)):
        per_copy = PerCopyLoss(loss_fn)
        torch.testing.assert_close(per_copy(outputs, targets), torch.stack(expected))
        assert (per_copy.batched is not None) is batched
    models = [tiny_model(seed) for seed in range(2)]
    make = OPTIMIZERS["sgd-momentum"]
    loaders = [tiny_task(seed=k) for k in range(2)]
    together = stacked_range_tests(models, make, clipped_cross_entropy, loaders, CALM, device=CPU)
    # the clip never acts on this task, so the curves are plain cross-entropy's
    assert_same_curves(together, one_by_one(models, make, CALM), tolerance=1e-4)


def test_an_interruption_stops_every_copy_at_the_same_step() -> None:
    shown: list[StepRecord] = []
    together = stacked(
        [tiny_model(seed) for seed in range(3)],
        OPTIMIZERS["sgd-momentum"],
        CALM,
        callback=shown.append,
        stop_requested=lambda: len(shown) == 5,
    )
    assert [result.stop_reason for result in together] == [STOP_INTERRUPTED] * 3
    assert [len(result.records) for result in together] == [5, 5, 5]
    assert [record.step for record in shown] == [0, 1, 2, 3, 4]


def test_bad_inputs_are_clear_errors() -> None:
    models = [tiny_model(seed) for seed in range(2)]
    make = OPTIMIZERS["sgd-momentum"]
    with pytest.raises(ConfigError, match="stacked repeats do not support fp16"):
        stacked(models, make, CALM, precision="fp16")
    with pytest.raises(ConfigError, match="one loader per model; got 2 models and 1 loaders"):
        stacked_range_tests(models, make, nn.functional.cross_entropy, [tiny_task()], CALM,
                            device=CPU)  # fmt: skip
    ragged = [tiny_task(seed=0), tiny_task(seed=1, batch_size=16)]
    with pytest.raises(SweepError, match=r"batches of one shape .*\(16, 8\), \(32, 8\)"):
        stacked_range_tests(models, make, nn.functional.cross_entropy, ragged, CALM, device=CPU)
    nan_first = [(inputs * float("nan"), targets) for inputs, targets in tiny_task()]
    with pytest.raises(SweepError, match="the loss was nan at the very first step"):
        stacked_range_tests(models, make, nn.functional.cross_entropy, [tiny_task(), nan_first],
                            CALM, device=CPU)  # fmt: skip


class BranchesOnItsInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 3)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(inputs) if inputs.sum() > 0 else -self.linear(inputs)


def test_stack_problem_names_what_vmap_cannot_run() -> None:
    sample = torch.randn(2, 8)
    assert stack_problem(tiny_model(), sample) is None
    assert stack_problem(batch_norm_model(0), sample) is None
    problem = stack_problem(BranchesOnItsInput(), sample)
    assert problem is not None and "torch.func.vmap cannot run" in problem
    assert "data-dependent control flow" in problem


def stack_choice(stack_repeats: str, model: nn.Module, device: str, **options: Any) -> Any:
    config = RunConfig(stack_repeats=stack_repeats, **options)
    return pipeline.stack_choice(config, model, torch.randn(2, 8), torch.device(device), Ranks())


def test_auto_stacks_on_cuda_only_and_says_why_when_it_cannot() -> None:
    assert stack_choice("auto", tiny_model(), "cpu") == (False, None)
    assert stack_choice("auto", tiny_model(), "cuda") == (True, None)
    assert stack_choice("auto", tiny_model(), "cuda", repeats=0) == (False, None)
    assert stack_choice("off", tiny_model(), "cuda") == (False, None)
    stack, note = stack_choice("auto", BranchesOnItsInput(), "cuda")
    assert not stack and note.startswith("The repeats ran one after another, not stacked")
    stack, note = stack_choice("auto", tiny_model(), "cuda", precision="fp16")
    assert not stack and "--precision fp16" in note
    with pytest.raises(ConfigError, match="--stack-repeats on: the repeats cannot be stacked"):
        stack_choice("on", BranchesOnItsInput(), "cpu")


def test_stack_repeats_on_gives_the_one_by_one_recommendation(
    mnist_dir: Path, tmp_path: Path
) -> None:
    documents = {}
    for mode in ("off", "on"):
        out = tmp_path / mode
        result = invoke(*tiny_run_arguments(mnist_dir, out), "--repeats", "3",
                        "--stack-repeats", mode)  # fmt: skip
        assert result.exit_code == 0, result.output
        documents[mode] = json.loads((out / "result.json").read_text())
    assert documents["on"]["repeats_stacked"] is True
    assert documents["off"]["repeats_stacked"] is False
    for key in ("max_lr", "base_lr"):
        assert documents["on"]["recommendation"][key] == pytest.approx(
            documents["off"]["recommendation"][key], rel=1e-3
        )
    stops = [[repeat["stop_reason"] for repeat in documents[mode]["repeats"]] for mode in documents]
    assert stops[0] == stops[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precision", "fp16"], "--stack-repeats on cannot be combined with --precision fp16"),
        (["--channels-last"], "--stack-repeats on cannot be combined with --channels-last"),
        (["--stack-repeats", "sometimes"], "unknown stack_repeats 'sometimes'; choose one of"),
    ],
)
def test_stacking_conflicts_fail_before_any_work(
    mnist_dir: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    result = invoke(*tiny_run_arguments(mnist_dir, out), "--stack-repeats", "on", *extra)
    assert_clean_failure(result, 2, message, out)


def test_memory_problem_allows_copies_that_fit_with_headroom_only() -> None:
    gib = 2**30
    assert memory_problem(5, gib, 10 * gib) is None
    problem = memory_problem(5, 2 * gib, 10 * gib)
    assert problem == (
        "5 copies would need about 10.0 GiB of GPU memory (2.00 GiB each, as the full sweep "
        "used) and 10.0 GiB are free"
    )


def test_stacked_repeats_that_run_out_of_gpu_memory_run_one_by_one(
    monkeypatch: pytest.MonkeyPatch, mnist_dir: Path, tmp_path: Path
) -> None:
    def out_of_memory(*arguments: Any, **options: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(pipeline, "stacked_range_tests", out_of_memory)
    out = tmp_path / "run"
    arguments = [*tiny_run_arguments(mnist_dir, out), "--repeats", "2", "--stack-repeats", "on"]
    result = invoke(*arguments)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "result.json").read_text())
    assert document["repeats_stacked"] is False
    assert [repeat["repeat"] for repeat in document["repeats"]] == [1, 2]
    assert "ran out of GPU memory; they ran one after another" in " ".join(document["diagnostics"])


def test_the_gpu_memory_check_counts_the_allocators_cached_memory_as_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Peak 3 GiB above the 1 GiB baseline: 2 GiB per copy. Free: 6 GiB from the driver plus
    4 GiB cached by torch's allocator (5 reserved, 1 allocated) = 10 GiB, 8 usable."""
    gib = 2**30
    for name, value in {
        "max_memory_allocated": 3 * gib,
        "mem_get_info": (6 * gib, 80 * gib),
        "memory_reserved": 5 * gib,
        "memory_allocated": gib,
    }.items():
        monkeypatch.setattr(torch.cuda, name, lambda device, value=value: value)
    cuda = torch.device("cuda")
    assert GpuPeak(cuda, gib).stacking_problem(4, None) is None  # 4 x 2 = 8 GiB
    problem = GpuPeak(cuda, gib).stacking_problem(5, None)
    assert problem is not None and "about 10.0 GiB" in problem and "10.0 GiB are free" in problem


def test_both_paths_keep_the_ratios_of_parameter_groups() -> None:
    """One case through the one sweep loop twice: a model alone and stacked copies. The
    optimizer has two groups, the second at a tenth of the first's rate; both paths record the
    first group's LR and set the second to a tenth of it at every step."""
    optimizers: list[torch.optim.Optimizer] = []

    def grouped(tensors: Any) -> torch.optim.Optimizer:
        first, *rest = list(tensors)
        optimizer = torch.optim.SGD(
            [{"params": [first], "lr": 1e-3}, {"params": rest, "lr": 1e-4}], momentum=0.9
        )
        optimizers.append(optimizer)
        return optimizer

    seen: dict[str, list[list[float]]] = {"alone": [], "stacked": []}

    def watcher(path: str) -> Callable[[StepRecord], None]:
        def watch(record: StepRecord) -> None:
            rates = [group["lr"] for group in optimizers[-1].param_groups]
            assert rates[0] == record.lr
            seen[path].append(rates)

        return watch

    models = [tiny_model(seed) for seed in range(2)]
    alone = []
    for model, loader in zip(models, [tiny_task(seed=0), tiny_task(seed=1)], strict=True):
        alone.append(
            range_test(model, grouped(model.parameters()), nn.functional.cross_entropy, loader,
                       **vars(CALM), seed=0, callback=watcher("alone"))
        )  # fmt: skip
    together = stacked(models, grouped, CALM, callback=watcher("stacked"))
    assert_same_curves(together, alone, tolerance=1e-4)
    for path, rates in seen.items():
        assert len(rates) >= CALM.steps, path
        assert all(second == pytest.approx(first / 10, rel=1e-12) for first, second in rates)
    assert [result.group_ratios for result in (*alone, *together)] == [(1.0, 0.1)] * 4
