"""lrfind on Hugging Face transformers, with the real package and tiny models built from
configs (nothing downloaded): dict batches swept through the Python API on the model's own
loss, the output rule on real ModelOutputs and return_dict=False tuples, and LrfindCallback
setting the rate inside a real `Trainer.train`."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

if os.environ.get("CI"):  # CI installs the extras: a missing one fails there
    import transformers
else:
    transformers = pytest.importorskip("transformers", reason="pip install -e '.[hf]'")

import lrfind
from lrfind.errors import ConfigError
from lrfind.huggingface import LrfindCallback
from lrfind.setup.batches import BatchRule, batch_loss, read_outputs

SWEEP = {"start_lr": 1e-5, "end_lr": 10.0, "steps": 80, "repeats": 0}
VOCAB = 32


@pytest.fixture(autouse=True)
def quiet_and_one_thread() -> Iterator[None]:
    """Tiny models: one thread each step; transformers' notes about the tiny configs off."""
    threads, verbosity = torch.get_num_threads(), transformers.logging.get_verbosity()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    yield
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity(verbosity)


class Counting(Dataset[dict[str, torch.Tensor]]):
    """Sequences that count up from a random token by a random step of 1 to 3 (mod the
    vocabulary): a causal LM learns the next token in a few dozen steps."""

    def __init__(self, count: int = 512, seed: int = 0, length: int = 12) -> None:
        generator = torch.Generator().manual_seed(seed)
        start = torch.randint(0, VOCAB, (count, 1), generator=generator)
        step = torch.randint(1, 4, (count, 1), generator=generator)
        self.ids = (start + step * torch.arange(length)) % VOCAB

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = self.ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def gpt2() -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=16, n_embd=32, n_layer=2, n_head=2, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def bert(**config: Any) -> Any:
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(
        transformers.BertConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=16, num_labels=2, **config,
        )
    )  # fmt: skip


def loader(dataset: Dataset[Any] | None = None, shuffle: bool = True) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(dataset or Counting(), batch_size=32, shuffle=shuffle, generator=generator)


def copies(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def identical(before: dict[str, torch.Tensor], model: torch.nn.Module) -> bool:
    after = model.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in after)


def test_dict_batches_sweep_a_model_on_its_own_loss_and_leave_it_bit_identical() -> None:
    model = gpt2()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = copies(model)
    outcome = lrfind.find_lr(model, optimizer, None, loader(), progress=False, **SWEEP)
    recommendation = outcome.recommendation
    assert recommendation is not None
    assert SWEEP["start_lr"] < recommendation.max_lr < SWEEP["end_lr"]
    assert outcome.main.records[0].loss > 3.0  # the model's own loss: ln 32 = 3.47 at the start
    assert min(record.loss for record in outcome.main.records) < 2.0  # and it learned
    assert identical(before, model)
    assert all(parameter.grad is None for parameter in model.parameters())
    assert optimizer.state_dict()["state"] == {}
    assert model.training


def test_the_output_rule_reads_real_model_outputs() -> None:
    model = gpt2()
    batch = next(iter(loader()))
    with torch.no_grad():
        with_labels = model(**batch)
        without = model(input_ids=batch["input_ids"])
        tuple_with = model(**batch, return_dict=False)
        tuple_without = model(input_ids=batch["input_ids"], return_dict=False)
    assert isinstance(with_labels, transformers.utils.ModelOutput)
    logits, loss = read_outputs(with_labels)
    assert loss is with_labels.loss and logits is with_labels.logits
    assert read_outputs(without) == (without.logits, None)
    logits, loss = read_outputs(tuple_with)  # (loss, logits, cache)
    assert loss is tuple_with[0] and logits is tuple_with[1]
    logits, loss = read_outputs(tuple_without)  # (logits, cache)
    assert loss is None and logits is tuple_without[0]


def test_labels_reach_a_forward_that_names_them_and_a_loss_function_serves_one_that_does_not() -> (
    None
):
    model = bert(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids = Counting(8).ids
    labels = (ids[:, 0] > VOCAB // 2).long()
    own = BatchRule(model).split({"input_ids": ids, "labels": labels})
    assert own.kwargs.keys() == {"input_ids", "labels"} and own.targets is labels
    with torch.no_grad():
        loss, _ = batch_loss(model, own, None)
        # "label", as a datasets column is often called: the model computes nothing from it
        # (its **kwargs take it), so lrfind's loss reads the logits against it
        other = BatchRule(model).split({"input_ids": ids, "label": labels})
        theirs, logits = batch_loss(model, other, torch.nn.functional.cross_entropy)
    assert logits.shape == (8, 2)
    assert torch.allclose(loss, theirs)


def test_a_model_returning_tuples_is_swept_on_the_loss_it_puts_first() -> None:
    model = bert(return_dict=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    counting = Counting()
    data = [{"input_ids": ids, "labels": (ids[0] > VOCAB // 2).long()} for ids in counting.ids]
    batches = loader(data, shuffle=False)  # type: ignore[arg-type]
    first = next(iter(batches))
    with torch.no_grad():
        expected = float(model(**first)[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    result = lrfind.range_test(model, optimizer, None, batches, progress=False, steps=20)
    assert result.records[0].loss == pytest.approx(expected, rel=1e-5)


class FirstStep(transformers.TrainerCallback):
    """What Trainer.train trains with at its first step: the rate and the weights."""

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 0:
            self.lr = kwargs["optimizer"].param_groups[0]["lr"]
            self.base_lrs = list(kwargs["lr_scheduler"].base_lrs)
            self.tensors = copies(kwargs["model"])


def train(tmp_path: Path, callback: LrfindCallback, **arguments: Any) -> FirstStep:
    first = FirstStep()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=32,
        learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no",
        logging_strategy="no", disable_tqdm=True, seed=0, **arguments,
    )  # fmt: skip
    model = gpt2()
    start = copies(model)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Counting(), callbacks=[callback, first]
    )
    trainer.train()
    assert first.tensors.keys() == start.keys()
    assert all(torch.equal(first.tensors[key], start[key]) for key in start)  # the sweep's undone
    return first


def test_the_callback_puts_the_recommended_peak_into_the_trainers_schedule(tmp_path: Path) -> None:
    callback = LrfindCallback(progress=False, **SWEEP)
    first = train(tmp_path, callback)  # the default schedule: linear decay from learning_rate
    recommendation = callback.outcome.recommendation if callback.outcome else None
    assert recommendation is not None
    assert callback.applied == recommendation.max_lr
    assert first.lr == pytest.approx(recommendation.max_lr)
    assert first.base_lrs == [pytest.approx(recommendation.max_lr)] * len(first.base_lrs)


def test_under_a_constant_schedule_the_callback_sets_the_constant_rate(tmp_path: Path) -> None:
    callback = LrfindCallback(progress=False, **SWEEP)
    first = train(tmp_path, callback, lr_scheduler_type="constant")
    recommendation = callback.outcome.recommendation if callback.outcome else None
    assert recommendation is not None
    assert callback.applied == recommendation.lr
    assert first.lr == pytest.approx(recommendation.lr)


def test_a_training_run_with_the_callback_trains_at_the_rate_it_found(tmp_path: Path) -> None:
    """What a user's training script does: the callback with its defaults (progress shown),
    Trainer.train for 30 steps; the rate it found is the one the run trained at."""
    callback = LrfindCallback(start_lr=1e-5, end_lr=10.0, steps=80, repeats=0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=30, per_device_train_batch_size=32,
        report_to=[], use_cpu=True, save_strategy="no", logging_steps=30, disable_tqdm=True,
        seed=0,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=gpt2(), args=args, train_dataset=Counting(), callbacks=[callback]
    )
    output = trainer.train()
    recommendation = callback.outcome.recommendation if callback.outcome else None
    assert recommendation is not None
    assert callback.applied == recommendation.max_lr > 0
    assert output.global_step == 30
    assert output.training_loss < 3.0  # ln 32 = 3.47 before training: it trained at that rate


def test_without_transformers_the_integration_names_its_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "lrfind.huggingface")
    with pytest.raises(ConfigError, match=re.escape("pip install 'lrfind[hf]'")):
        importlib.import_module("lrfind.huggingface")
