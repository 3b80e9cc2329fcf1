"""The batch, output and loss rules (lrfind.setup.batches, lrfind.setup.losses, docs/rules.md),
checked on their own and through the range test on tiny seeded models."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional

from lrfind.engine.finder import range_test
from lrfind.engine.loop import user_code_errors
from lrfind.errors import ConfigError, DataError, SpecError, SweepError, UserCodeError
from lrfind.settings.options import RunConfig
from lrfind.setup import models, samples
from lrfind.setup.batches import BatchRule, batch_loss, read_outputs
from lrfind.setup.losses import build_loss, check_targets_fit
from lrfind.setup.prepare import prepare_data
from tests.conftest import write_python

Outputs = namedtuple("Outputs", ["logits", "aux_logits"])


class Record:
    """An object with `loss` and `logits` attributes, as a Hugging Face ModelOutput has."""

    def __init__(self, loss: Any, logits: Any) -> None:
        self.loss, self.logits = loss, logits


def test_the_output_rule_takes_the_main_logits_or_the_models_own_loss() -> None:
    logits, loss = torch.randn(4, 3), torch.tensor(0.7)
    assert read_outputs(logits) == (logits, None)
    assert read_outputs(Outputs(logits, torch.zeros(4, 3)))[0] is logits
    assert read_outputs([logits])[0] is logits
    assert read_outputs((loss, logits)) == (logits, loss)  # return_dict=False with labels
    assert read_outputs({"logits": logits}) == (logits, None)
    assert read_outputs({"loss": loss, "logits": logits}) == (logits, loss)
    assert read_outputs(Record(None, logits)) == (logits, None)
    assert read_outputs(Record(loss, logits)) == (logits, loss)
    for unreadable in ({"hidden": logits}, "text", ()):
        with pytest.raises(SweepError, match="cannot read as outputs"):
            read_outputs(unreadable)


class Keywords(nn.Module):
    """A text model that takes keyword inputs and, given labels, computes its own loss."""

    def __init__(self, own_loss: bool) -> None:
        super().__init__()
        self.embedding = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 3)
        self.own_loss = own_loss

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: Any
    ) -> dict[str, Any]:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1)
        logits = self.head(pooled)
        labels = extra.get("labels")
        if self.own_loss and labels is not None:
            return {"loss": functional.cross_entropy(logits, labels) + 1.0, "logits": logits}
        return {"logits": logits}


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        return self.head((self.embedding(input_ids) * mask).sum(1) / mask.sum(1))


def text_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(0, 20, (6, 5), generator=generator),
        "attention_mask": torch.ones(6, 5, dtype=torch.long),
        "labels": torch.tensor([0, 1, 2, 0, 1, 2]),
    }


def test_a_mapping_batch_gives_labels_to_a_model_that_takes_them_and_not_to_one_that_does_not():
    batch = text_batch()
    plain = Plain()
    split = BatchRule(plain).split(batch)
    assert set(split.kwargs) == {"input_ids", "attention_mask"}
    assert split.targets is batch["labels"]
    loss, _ = batch_loss(plain, split, functional.cross_entropy)
    expected = functional.cross_entropy(
        plain(batch["input_ids"], batch["attention_mask"]), batch["labels"]
    )
    assert torch.allclose(loss, expected)

    own = Keywords(own_loss=True)
    split = BatchRule(own).split(batch)
    assert "labels" in split.kwargs  # forward takes **kwargs
    loss, logits = batch_loss(own, split, None)
    assert torch.allclose(loss, functional.cross_entropy(logits, batch["labels"]) + 1.0)


def test_wrappers_are_looked_through_but_a_submodule_called_module_is_not_one() -> None:
    class Inner(nn.Module):
        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return features

    class Named(nn.Module):  # its part is called `module`, as many models' are
        def __init__(self) -> None:
            super().__init__()
            self.module = Inner()

        def forward(self, input_ids: torch.Tensor, labels: Any = None) -> torch.Tensor:
            return input_ids

    batch = {"input_ids": torch.zeros(2), "labels": torch.ones(2)}
    for model in (Named(), nn.DataParallel(Named()), torch.compile(Named())):
        assert set(BatchRule(model).split(batch).kwargs) == {"input_ids", "labels"}


def test_extra_batch_items_reach_the_loss_and_a_two_argument_loss_refuses_them() -> None:
    model = nn.Linear(4, 3)
    inputs, targets = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    weights = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    rule = BatchRule(model)

    def weighted(outputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> Any:
        return (functional.cross_entropy(outputs, targets, reduction="none") * weights).sum()

    loss, outputs = batch_loss(model, rule.split((inputs, targets, weights)), weighted)
    assert torch.allclose(loss, functional.cross_entropy(outputs[:1], targets[:1]))
    with pytest.raises(SweepError, match=r"3 items.*takes only \(outputs, targets\)"):
        batch_loss(model, rule.split((inputs, targets, weights)), nn.CrossEntropyLoss())


def test_a_batch_that_is_not_a_pair_or_a_mapping_names_unpack() -> None:
    with pytest.raises(SweepError, match="unpack="):
        BatchRule(nn.Linear(2, 2)).split(torch.zeros(3, 2))
    rule = BatchRule(nn.Linear(2, 2), unpack=lambda raw: (raw[:, :2], raw[:, 2].long()))
    split = rule.split(torch.zeros(3, 3))
    assert split.inputs.shape == (3, 2) and split.targets.dtype == torch.long


def loader(batches: int = 40, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 6, generator=generator) * 2
    result = []
    for _ in range(batches):
        labels = torch.randint(0, 3, (32,), generator=generator)
        result.append((centres[labels] + torch.randn(32, 6, generator=generator), labels))
    return result


class TwoHeads(nn.Module):
    """GoogLeNet's habit: the main logits and an auxiliary head in train mode only."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 16)
        self.main = nn.Linear(16, 3)
        self.aux = nn.Linear(16, 3)

    def forward(self, inputs: torch.Tensor) -> Any:
        hidden = torch.relu(self.body(inputs))
        if self.training:
            return Outputs(self.main(hidden), self.aux(hidden))
        return self.main(hidden)


def sweep(model: nn.Module, loss_fn: Any, batches: list[Any], **options: Any) -> list[float]:
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    result = range_test(model, optimizer, loss_fn, batches, steps=30, seed=0, **options)
    return [record.loss for record in result.records]


def test_the_api_sweeps_a_model_with_auxiliary_outputs_and_a_per_sample_loss() -> None:
    torch.manual_seed(0)
    model = TwoHeads()
    mean = sweep(model, functional.cross_entropy, loader())
    per_sample = sweep(model, nn.CrossEntropyLoss(reduction="none"), loader())
    assert len(mean) >= 10 and mean == pytest.approx(per_sample, rel=1e-6)


def test_the_api_sweeps_a_model_that_computes_its_own_loss_from_dict_batches() -> None:
    torch.manual_seed(0)
    batches = [text_batch() for _ in range(30)]
    own = sweep(Keywords(own_loss=True), None, batches)
    torch.manual_seed(0)
    plain = sweep(Keywords(own_loss=False), functional.cross_entropy, batches)
    assert own == pytest.approx([value + 1.0 for value in plain], rel=1e-5)


def fit_check(model: nn.Module, batch: Any, **setup: Any) -> None:
    config = RunConfig(model="m", **setup)
    split = BatchRule(model).split(batch)
    models.check_model_fits(model, split, build_loss(config), config, config.num_classes)


def test_the_fit_check_runs_in_train_mode_and_leaves_batch_norm_statistics_alone() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    model.eval()
    before = [buffer.clone() for buffer in model.buffers()]
    fit_check(model, loader()[0])
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))
    assert not model.training
    fit_check(TwoHeads(), loader()[0], num_classes=3)  # a tuple in train mode only


@pytest.mark.parametrize(
    ("loss", "targets", "phrases"),
    [
        ("cross-entropy", torch.rand(8) * 3, ["floats", "--loss mse"]),
        (
            "cross-entropy",
            torch.tensor([0, 1, 2, 3, 4, 5, 6, 7]),
            ["class index 7", "--num-classes 8"],
        ),
        ("nll", torch.tensor([0, -1, 0, 0, 0, 0, 0, 0]), ["class index -1"]),
        ("mse", torch.rand(8, 2), ["shape (8, 3)", "(8, 2)"]),
        ("bce", torch.full((8, 3), 2.0), ["between 0 and 1", "from 2 to 2"]),
        ("cross-entropy", torch.ones(8, dtype=torch.bool), ["torch.bool", "--loss bce"]),
    ],
)
def test_targets_that_do_not_fit_the_loss_are_refused_with_the_fix(
    loss: str, targets: torch.Tensor, phrases: list[str]
) -> None:
    outputs = torch.randn(8, 3)
    outputs = torch.log_softmax(outputs, dim=1) if loss == "nll" else outputs
    with pytest.raises(SpecError) as refused:
        check_targets_fit(loss, outputs, targets, "m")
    for phrase in phrases:
        assert phrase in str(refused.value)


def test_targets_that_fit_pass_the_check() -> None:
    outputs = torch.randn(8, 3)
    check_targets_fit("cross-entropy", outputs, torch.tensor([0, 1, 2, -100, 0, 1, 2, 0]), "m")
    check_targets_fit("cross-entropy", outputs, torch.softmax(torch.randn(8, 3), 1), "m")
    check_targets_fit("bce", outputs, torch.randint(0, 2, (8, 3)), "m")
    check_targets_fit("mse", torch.randn(8, 1), torch.randn(8), "m")


def test_regression_losses_reshape_targets_instead_of_broadcasting() -> None:
    outputs, targets = torch.randn(8, 1), torch.randn(8)
    for name, reference in (("mse", functional.mse_loss), ("l1", functional.l1_loss)):
        loss = build_loss(RunConfig(loss=name))(outputs, targets)
        assert torch.allclose(loss, reference(outputs, targets.unsqueeze(1)))
        assert not torch.allclose(loss, reference(outputs, targets.expand(8, 8)))
    bce = build_loss(RunConfig(loss="bce"))(
        torch.randn(4, 2), torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    )
    assert bce.dtype == torch.float32


def test_label_smoothing_reaches_cross_entropy() -> None:
    outputs, targets = torch.randn(8, 3), torch.randint(0, 3, (8,))
    smoothed = build_loss(RunConfig(label_smoothing=0.2))(outputs, targets)
    assert torch.allclose(smoothed, functional.cross_entropy(outputs, targets, label_smoothing=0.2))


def test_a_user_loss_that_fails_on_the_first_batch_is_named_before_the_sweep(tmp_path: Any) -> None:
    (tmp_path / "user_losses.py").write_text(
        "def broken(outputs, targets):\n    raise KeyError('weights')\n"
    )
    spec = f"{tmp_path / 'user_losses.py'}:broken"
    expected = r"while lrfind ran loss .*broken.* on the first batch"
    with pytest.raises(UserCodeError, match=expected), user_code_errors("the run raised"):
        fit_check(nn.Linear(6, 3), loader()[0], loss=spec)


# Cases a hostile review found (issue 15): each was a crash, a silent wrong number or a
# misleading message.


def test_numpy_scalar_labels_stay_scalars() -> None:
    sample = samples.as_tensors((np.zeros(3, np.float32), np.int64(4)))
    assert sample[1].shape == () and sample[1].dtype == torch.int64
    assert samples.as_tensors(np.array(2.5)).shape == ()
    assert samples.as_tensors(np.zeros((2, 3), np.uint8)).shape == (2, 3)


@pytest.mark.parametrize(
    ("loss", "outputs", "targets", "phrases"),
    [
        ("cross-entropy", torch.randn(8, 2), torch.rand(8, 2) * 3, ["rows sum", "--loss mse"]),
        ("cross-entropy", torch.randn(8, 2), torch.rand(8, 3), ["3 columns", "2 outputs"]),
        ("cross-entropy", torch.randn(8, 3), torch.zeros(8, 1, dtype=torch.long), ["Squeeze"]),
        (
            "cross-entropy",
            torch.randn(8, 3, 4, 4),
            torch.zeros(8, 1, 4, 4, dtype=torch.long),
            ["(8, 4, 4)"],
        ),
        (
            "cross-entropy",
            torch.randn(8, 3),
            torch.eye(3, dtype=torch.long)[[0, 1, 2, 0, 1, 2, 0, 1]],
            ["argmax"],
        ),
        (
            "nll",
            torch.randn(8, 3),
            torch.zeros(8, dtype=torch.long),
            ["log-probabilities", "cross-entropy"],
        ),
    ],
)
def test_targets_and_outputs_that_only_look_right_are_refused(
    loss: str, outputs: torch.Tensor, targets: torch.Tensor, phrases: list[str]
) -> None:
    with pytest.raises(SpecError) as refused:
        check_targets_fit(loss, outputs, targets, "m")
    for phrase in phrases:
        assert phrase in str(refused.value)


def test_nll_takes_log_probabilities() -> None:
    outputs = torch.log_softmax(torch.randn(8, 3), dim=1)
    check_targets_fit("nll", outputs, torch.zeros(8, dtype=torch.long), "m")


def regression_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(16, 3, generator=generator) for _ in range(20)]
    return [(x, x.sum(1)) for x in inputs]


def test_a_loss_that_broadcasts_outputs_and_targets_is_refused_at_the_first_step() -> None:
    model = nn.Linear(3, 1)
    with pytest.raises(SweepError, match=r"shape \(16, 1\) with targets of shape \(16,\)"):
        sweep(model, nn.MSELoss(), regression_batches())
    squeezed = sweep(model, lambda o, t: functional.mse_loss(o.squeeze(1), t), regression_batches())
    reshaped = sweep(model, build_loss(RunConfig(loss="mse")), regression_batches())
    assert squeezed == pytest.approx(reshaped, rel=1e-6)


def test_the_api_refuses_a_loss_class_and_an_optimizer_of_another_model() -> None:
    model, other = nn.Linear(6, 3), nn.Linear(6, 3)
    with pytest.raises(ConfigError, match=r"CrossEntropyLoss\(\) \(with the parentheses\)"):
        range_test(model, torch.optim.SGD(model.parameters()), nn.CrossEntropyLoss, loader())
    with pytest.raises(ConfigError, match="none of the model's parameters"):
        range_test(model, torch.optim.SGD(other.parameters()), functional.cross_entropy, loader())


def test_loss_names_are_read_in_any_case_and_close_ones_are_suggested() -> None:
    assert RunConfig(loss="Huber").loss == "huber"
    assert RunConfig(loss="cross_entropy").loss == "cross-entropy"
    with pytest.raises(ConfigError, match="Did you mean 'cross-entropy'"):
        RunConfig(loss="crossentropy")


def test_an_iterable_dataset_that_cannot_start_over_is_named(tmp_path: Any) -> None:
    factory = write_python(
        tmp_path / "once.py",
        "class Once(torch.utils.data.IterableDataset):\n"
        "    def __init__(self):\n"
        "        self.items = iter([(torch.zeros(3), 0)] * 64)\n"
        "    def __iter__(self):\n"
        "        return self.items\n\n"
        "def data():\n    return Once()\n",
    )
    config = RunConfig(dataset=f"{factory}:data", batch_size=8)
    with pytest.raises(DataError, match="must start over each time"):
        prepare_data(config, torch.device("cpu"), held_out_samples=lambda total: 0)
