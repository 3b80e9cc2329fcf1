"""Any dataset: class counts, iterable datasets, sample forms, ragged samples, and real runs.

    pytest -q tests/test_datasets_any.py

Issue 15: a TensorDataset without `classes` once built a model with 0 outputs; PIL images,
dict samples and iterable datasets were refused. The end-to-end cases at the bottom run the
command (in this process) on tiny data.
"""

from __future__ import annotations

import json
from collections import namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from lrfind.errors import DataError
from lrfind.settings.options import RunConfig
from lrfind.setup import samples, userdata
from lrfind.setup.prepare import prepare_data
from tests.conftest import invoke, lrfind, write_image_folder, write_python, write_torchvision_mnist

IMPORTS = (
    "import numpy as np\nimport torch\n"
    "from torch.utils.data import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset\n"
)

DATASETS = """
class Pairs(Dataset):
    '''(input, label) pairs made on demand, no attribute saying the classes.'''

    def __init__(self, count=40, classes=5, ragged_at=None):
        self.count, self.label_count, self.ragged_at = count, classes, ragged_at

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        width = 5 if index == self.ragged_at else 4
        return torch.full((width,), float(index)), (index * 3) % self.label_count


class Named(Pairs):
    classes = ["a", "b", "c", "d", "e", "f", "g", "h"]


class Stream(IterableDataset):
    '''64 numpy samples with Python float targets, read in order, no length.'''

    def __iter__(self):
        for index in range(64):
            yield np.full(4, index / 64, dtype=np.float64), float(index) / 64


class Tokens(Dataset):
    '''Hugging Face shaped samples: lists of token ids and a label.'''

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return {"input_ids": [index, index + 1, index + 2], "labels": index % 3}


class Padded(Dataset):
    '''Ragged token lists, batched by its own collate_fn.'''

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return list(range(index + 1)), index % 2

    def collate_fn(self, samples):
        width = max(len(tokens) for tokens, _ in samples)
        inputs = [tokens + [0] * (width - len(tokens)) for tokens, _ in samples]
        return torch.tensor(inputs), torch.tensor([label for _, label in samples])


def pairs():
    return Pairs()


def named():
    return Named()


def subset_of_named():
    return ConcatDataset([Subset(Named(), range(10)), Pairs(count=10, classes=3)])


def tensors():
    return TensorDataset(torch.randn(30, 2), torch.arange(30) % 6)


def regression():
    return TensorDataset(torch.randn(30, 2), torch.randn(30, 3))


def stream():
    return Stream()


def tokens():
    return Tokens()


def ragged():
    return Pairs(ragged_at=3)


def ragged_late():
    return Pairs(count=40, ragged_at=30)


def padded():
    return Padded()


def triples():
    return TensorDataset(torch.randn(20, 2), torch.arange(20) % 2, torch.rand(20))
"""


@pytest.fixture
def specs(tmp_path: Path) -> str:
    """The prefix of a spec into the factory file above (append a function name)."""
    return f"{write_python(tmp_path / 'datasets.py', DATASETS, IMPORTS)}:"


# ---------------------------------------------------------------------------------------------
# Class counts


@pytest.mark.parametrize(
    ("factory", "classes", "origin"),
    [
        ("named", 8, "the dataset's `classes` attribute"),  # not the 5 its labels show
        ("subset_of_named", 8, "the dataset's `classes` attribute"),  # through Concat, Subset
        ("tensors", 6, "the label tensor of the TensorDataset (30 labels)"),
        ("pairs", 5, "the labels of all 40 samples (the highest label + 1)"),
    ],
)
def test_the_class_count_comes_from_attributes_then_label_tensors_then_labels(
    specs: str, factory: str, classes: int, origin: str
) -> None:
    loaded = userdata.load_user_dataset(specs + factory)
    assert (loaded.num_classes, loaded.num_classes_from) == (classes, origin)


def test_num_classes_given_overrides_what_the_data_says(specs: str) -> None:
    loaded = userdata.load_user_dataset(specs + "named", num_classes=12)
    assert (loaded.num_classes, loaded.num_classes_from) == (12, "--num-classes")


def test_num_classes_given_overrides_a_built_in_dataset_too(mnist_dir: Path) -> None:
    config = RunConfig(dataset="mnist", data_dir=mnist_dir, download=False, num_classes=12)
    prepared = prepare_data(config, torch.device("cpu"), held_out_samples=lambda total: 0)
    assert prepared.num_classes == 12 and prepared.target_shape == ()
    assert prepared.description["num_classes_from"] == "--num-classes"


def test_labels_are_read_only_for_a_classification_loss(specs: str) -> None:
    loaded = userdata.load_user_dataset(specs + "pairs", classification=False)
    assert loaded.num_classes is None


def test_a_large_dataset_has_its_labels_read_evenly_spaced(
    specs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(userdata, "SCAN_LIMIT", 7)  # of 40 samples: 0, 6, 13, ..., 39
    loaded = userdata.load_user_dataset(specs + "pairs")
    labels_read = [(index * 3) % 5 for index in userdata.spread_indices(40, 7)]
    assert loaded.num_classes == max(labels_read) + 1
    assert (
        loaded.num_classes_from
        == "the labels of 7 of 40 samples, evenly spaced (the highest label + 1)"
    )


def test_spread_indices_cover_the_first_and_the_last() -> None:
    assert userdata.spread_indices(5, 10) == [0, 1, 2, 3, 4]
    assert userdata.spread_indices(101, 5) == [0, 25, 50, 75, 100]


def test_float_targets_have_no_class_count_and_give_their_shape(specs: str) -> None:
    loaded = userdata.load_user_dataset(specs + "regression")
    assert (loaded.num_classes, loaded.target_shape) == (None, (3,))
    streamed = userdata.load_user_dataset(specs + "stream")
    assert (streamed.num_classes, streamed.target_shape) == (None, ())


# ---------------------------------------------------------------------------------------------
# Samples


def test_samples_get_tensors_for_leaves() -> None:
    Pair = namedtuple("Pair", "image label")
    gray = Image.fromarray(np.array([[0, 255], [51, 102]], dtype=np.uint8))
    converted = samples.as_tensors(
        Pair(gray, {"input_ids": [1, 2], "mask": np.ones(2, dtype=">i4"), "text": "hi"})
    )
    assert isinstance(converted, Pair)
    assert converted.image.shape == (1, 2, 2) and converted.image.dtype == torch.float32
    assert converted.image.flatten().tolist() == pytest.approx([0.0, 1.0, 0.2, 0.4])
    assert converted.label["input_ids"].tolist() == [1, 2]
    assert converted.label["mask"].dtype == torch.int32
    assert converted.label["text"] == "hi"
    assert samples.as_tensors(np.zeros(3)).dtype == torch.float32  # float64 arrays: float32
    assert samples.as_tensors((2.5, 3))[0].dtype == torch.float32
    assert samples.as_tensors((2.5, 3))[1].dtype == torch.int64
    assert samples.as_tensors([1, 2]) == [torch.tensor(1), torch.tensor(2)]  # a pair, not a tensor


def test_rgb_and_palette_images_become_three_channels() -> None:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    rgb = samples.as_tensors(Image.fromarray(pixels))
    np.testing.assert_allclose(rgb.numpy(), pixels.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    palette = samples.as_tensors(Image.fromarray(pixels).convert("P"))
    assert palette.shape == (3, 2, 3)


def test_dict_samples_stay_mappings_and_the_sample_inputs_are_a_batch_of_two(
    specs: str,
) -> None:
    config = RunConfig(dataset=specs + "tokens", model="mlp", batch_size=4)
    prepared = prepare_data(config, torch.device("cpu"), held_out_samples=lambda total: 4)
    assert prepared.num_classes == 3 and prepared.input_shape == ()
    assert set(prepared.sample_inputs) == {"input_ids", "labels"}
    assert prepared.sample_inputs["input_ids"].tolist() == [[0, 1, 2], [1, 2, 3]]
    batch = next(iter(prepared.loader_for(0)))
    assert batch["input_ids"].shape == (4, 3) and batch["labels"].shape == (4,)
    held_out = prepared.held_out_batches(3)
    assert [part["labels"].tolist() for part in held_out] == [[2, 0, 1], [2]]  # samples 8..11


def test_triples_keep_their_third_item(specs: str) -> None:
    loaded = userdata.load_user_dataset(specs + "triples")
    batch = next(iter(userdata.user_loader(loaded, batch_size=5, seed=0)))
    assert len(batch) == 3 and batch[2].shape == (5,)


def test_ragged_samples_are_refused_with_the_index_and_the_fix(specs: str) -> None:
    with pytest.raises(
        DataError, match=r"sample 3 has inputs of shape \(5,\) but sample 0 has"
    ) as caught:
        userdata.load_user_dataset(specs + "ragged", classification=False)
    assert "collate_fn" in str(caught.value) and "Pad" in str(caught.value)


def test_ragged_samples_past_the_first_few_are_found_where_labels_are_read(specs: str) -> None:
    with pytest.raises(DataError, match="sample 30 has inputs"):
        userdata.load_user_dataset(specs + "ragged_late")


def test_a_ragged_batch_the_checks_did_not_read_is_refused_with_the_fix(specs: str) -> None:
    loaded = userdata.load_user_dataset(specs + "ragged_late", classification=False)
    with pytest.raises(DataError, match="cannot be stacked into one batch") as caught:
        list(userdata.user_loader(loaded, batch_size=40, seed=0))
    assert "collate_fn" in str(caught.value)


def test_a_collate_fn_attribute_batches_ragged_samples(specs: str) -> None:
    loaded = userdata.load_user_dataset(specs + "padded")
    assert loaded.num_classes == 2
    inputs, labels = loaded.collate([loaded.dataset[0], loaded.dataset[2]])
    assert inputs.tolist() == [[0, 0, 0], [0, 1, 2]] and labels.tolist() == [0, 0]


# ---------------------------------------------------------------------------------------------
# Iterable datasets


def test_an_iterable_dataset_is_read_in_order_with_its_first_items_held_out(specs: str) -> None:
    config = RunConfig(dataset=specs + "stream", model="mlp", batch_size=8, loss="mse")
    asked: list[Any] = []

    def held_out(total: int | None) -> int:
        asked.append(total)
        return 8

    prepared = prepare_data(config, torch.device("cpu"), held_out_samples=held_out)
    assert asked == [None]  # its length is unknown
    assert prepared.steps_per_epoch is None
    assert "unknown" in prepared.description["steps_per_epoch_note"]
    assert prepared.description["samples"] is None and prepared.description["iterable"]
    assert prepared.held_out_source.startswith("the first 8 items")
    ((inputs, _),) = prepared.held_out_batches(8)
    assert (inputs[:, 0] * 64).tolist() == list(range(8)) and inputs.dtype == torch.float32
    for seed in (0, 1):  # the seed cannot reorder a stream
        first = next(iter(prepared.loader_for(seed)))
        assert (first[0][:, 0] * 64).tolist() == list(range(8, 16))
    assert sum(1 for _ in prepared.loader_for(0)) == (64 - 8) // 8


def test_lrfind_train_refuses_an_iterable_dataset(specs: str) -> None:
    config = RunConfig(dataset=specs + "stream", model="mlp", batch_size=8, loss="mse")
    with pytest.raises(DataError, match=r"iterable dataset .* map-style"):
        prepare_data(config, torch.device("cpu"), held_out_samples=lambda total: 1, test_split=True)


def test_a_torchvision_dataset_holds_out_its_test_split_for_training(tmp_path: Path) -> None:
    root = write_torchvision_mnist(tmp_path / "data", "KMNIST", train=64, test=16)
    config = RunConfig(dataset="torchvision:KMNIST", data_dir=root, download=False, batch_size=8)
    prepared = prepare_data(
        config, torch.device("cpu"), held_out_samples=lambda total: 99, test_split=True
    )
    assert prepared.held_out_source == "the test split of torchvision:KMNIST (16 samples)"
    assert prepared.held_out_inputs is not None and prepared.held_out_inputs.shape == (
        16,
        1,
        28,
        28,
    )
    assert prepared.steps_per_epoch == 64 // 8  # every training sample trains


# ---------------------------------------------------------------------------------------------
# The command, end to end (in this process)


def run_result(*arguments: Any, cwd: Path) -> dict[str, Any]:
    out = cwd / "run"
    completed = lrfind(
        "run", *arguments, "--steps", "20", "--repeats", "0", "--device", "cpu",
        "--start-lr", "1e-3", "--end-lr", "10", "--out", out, cwd=cwd,
    )  # fmt: skip
    assert completed.returncode in (0, 1), completed.stderr
    assert "Traceback" not in completed.stderr
    document: dict[str, Any] = json.loads((out / "result.json").read_text())
    assert document["sweep"]["steps_run"] >= 10
    return document


def test_a_tensor_dataset_runs_with_a_built_in_model(tmp_path: Path) -> None:
    path = write_python(
        tmp_path / "tensors.py",
        "def make():\n"
        "    generator = torch.Generator().manual_seed(0)\n"
        "    labels = torch.arange(256) % 10\n"
        "    images = torch.randn(256, 1, 8, 8, generator=generator) + labels.view(-1, 1, 1, 1)\n"
        "    return TensorDataset(images, labels)\n",
        "import torch\nfrom torch.utils.data import TensorDataset\n",
    )
    document = run_result(
        "--dataset", f"{path}:make", "--model", "mlp", "--batch-size", "32", cwd=tmp_path
    )
    assert document["data"]["num_classes"] == 10
    assert "TensorDataset" in document["data"]["num_classes_from"]


def test_a_torchvision_dataset_without_a_transform_runs(tmp_path: Path) -> None:
    root = write_torchvision_mnist(tmp_path / "data", "KMNIST", train=128, test=16)
    document = run_result(
        "--dataset", "torchvision:KMNIST", "--data-dir", root, "--no-download",
        "--model", "lenet", "--batch-size", "16", cwd=tmp_path,
    )  # fmt: skip
    assert document["data"]["input_shape"] == [1, 28, 28]
    assert document["data"]["num_classes"] == 10
    assert document["data"]["steps_per_epoch"] == 128 // 16


def test_an_image_folder_runs(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", {"red": [(8, 8)] * 24, "blue": [(8, 8)] * 24})
    document = run_result(
        "--dataset", f"folder:{root}", "--model", "mlp", "--batch-size", "8", cwd=tmp_path
    )
    assert document["data"]["input_shape"] == [3, 8, 8]
    assert document["data"]["num_classes"] == 2
    assert document["data"]["source"] == str(root)


def test_an_iterable_dataset_runs_with_unknown_steps_per_epoch(tmp_path: Path) -> None:
    path = write_python(tmp_path / "streamed.py", DATASETS, IMPORTS)
    model = write_python(
        tmp_path / "net.py",
        "def build(input_shape):\n"
        "    return nn.Sequential(nn.Linear(input_shape[0], 1), nn.Flatten(0))\n",
    )
    document = run_result(
        "--dataset", f"{path}:stream", "--model", f"{model}:build", "--loss", "mse",
        "--batch-size", "4", "--val-batches", "1", cwd=tmp_path,
    )  # fmt: skip
    assert document["data"]["steps_per_epoch"] is None
    assert document["data"]["held_out_samples"] == 4


def test_lrfind_list_shows_the_dataset_forms() -> None:
    result = invoke("list")
    assert result.exit_code == 0
    for form in ("torchvision:<Class>", "folder:PATH", "file.py:fn / module:fn"):
        assert form in result.output
