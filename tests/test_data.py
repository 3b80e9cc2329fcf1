"""Datasets: IDX parsing and its failures, discovery order, download, batching, factories."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from lrfind.errors import DataError, SpecError
from lrfind.setup import data, userdata
from tests.conftest import (
    idx_bytes,
    learnable_images,
    write_idx,
    write_image_folder,
    write_mnist_files,
    write_python,
    write_torchvision_mnist,
)


def test_idx_round_trip_gzipped_and_raw(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("images.gz", "images"):
        np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / name, images)), images)


def test_idx_reads_big_endian_integers(tmp_path: Path) -> None:
    values = np.array([1, -2, 70000], dtype=">i4")
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "v", values)), values)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\x00\x00", "too short"),
        (b"\x12\x34\x08\x01" + (3).to_bytes(4, "big") + b"abc", "wrong magic number"),
        (idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-100], "truncated"),
        (idx_bytes(np.zeros((3,), np.uint8)) + b"extra", "longer than its header"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated inside its header"),
    ],
)
def test_corrupt_idx_files_are_named_in_the_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        data.read_idx(path)
    assert str(path) in str(caught.value)


def test_a_gz_file_that_is_not_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(idx_bytes(np.zeros((2, 2, 2), np.uint8)))
    with pytest.raises(DataError, match="not gzip") as caught:
        data.read_idx(path)
    assert str(path) in str(caught.value)


def test_a_truncated_gzip_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    pixels = np.random.default_rng(0).integers(0, 255, size=(50, 28, 28), dtype=np.uint8)
    compressed = gzip.compress(idx_bytes(pixels))
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match="damaged or truncated gzip") as caught:
        data.read_idx(path)
    assert str(path) in str(caught.value)


def test_images_and_labels_of_different_counts_are_refused(mnist_dir: Path) -> None:
    write_idx(mnist_dir / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match=r"600 images but .* has 5 labels"):
        data.load_builtin("mnist", mnist_dir, allow_download=False)


def test_mnist_loads_from_real_format_files(mnist_dir: Path) -> None:
    loaded = data.load_builtin("mnist", mnist_dir, allow_download=False)
    images, labels = learnable_images(600, seed=0)
    assert loaded.images.shape == (600, 1, 28, 28) and loaded.images.dtype == torch.uint8
    assert torch.equal(loaded.images[:, 0], torch.from_numpy(images))
    assert torch.equal(loaded.labels, torch.from_numpy(labels.astype(np.int64)))
    assert loaded.mean == pytest.approx(images.mean())
    assert loaded.std == pytest.approx(images.std())
    assert loaded.source == str(mnist_dir)


def test_search_order_is_data_dir_then_environment_then_cache_then_system(
    isolated_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = data.BUILTIN_DATASETS["mnist"]
    places = {
        "data_dir": isolated_data / "given",
        "environment": isolated_data / "from-env",
        "cache": isolated_data / "cache" / "lrfind" / "mnist",
        "system": Path(dataset.system_dirs[0]),
    }
    monkeypatch.setenv("LRFIND_DATA_DIR", str(places["environment"]))
    for folder in places.values():
        write_mnist_files(folder, train=20, test=10)
    order = []
    for folder in places.values():
        found = data.locate(dataset, places["data_dir"])
        assert found is not None
        order.append(next(key for key, value in places.items() if found[0].parent == value))
        for path in folder.iterdir():
            path.unlink()
    assert order == ["data_dir", "environment", "cache", "system"]
    assert data.locate(dataset, places["data_dir"]) is None


def test_torchvision_folder_layout_is_found(isolated_data: Path) -> None:
    root = isolated_data / "tv"
    write_mnist_files(root / "MNIST" / "raw", train=20, test=10)
    found = data.locate(data.BUILTIN_DATASETS["mnist"], root)
    assert found is not None and found[0].parent == root / "MNIST" / "raw"


def test_missing_data_offline_names_the_three_ways_to_get_it(isolated_data: Path) -> None:
    with pytest.raises(DataError) as caught:
        data.load_builtin("fashion-mnist", isolated_data / "nowhere", allow_download=False)
    message = str(caught.value)
    assert "--no-download" in message and "Searched:" in message
    assert "--data-dir" in message and "LRFIND_DATA_DIR" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--download" in message


@pytest.fixture
def local_mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a folder: a stand-in for the dataset mirrors."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        server.shutdown()
        server.server_close()


def test_download_fetches_through_torchvision_into_the_cache(
    isolated_data: Path, local_mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder = local_mirror
    write_mnist_files(folder, train=64, test=16)
    resources = [
        (path.name, hashlib.md5(path.read_bytes()).hexdigest()) for path in sorted(folder.iterdir())
    ]
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", [url])
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "resources", resources)

    loaded = data.load_builtin("fashion-mnist", None, allow_download=True)

    cached = isolated_data / "cache" / "lrfind" / "fashion-mnist"
    assert len(loaded) == 64
    assert loaded.source == str(cached)
    assert sorted(path.name for path in cached.iterdir()) == sorted(name for name, _ in resources)
    leftovers = [p.name for p in cached.parent.iterdir() if p.name.startswith(".download-")]
    assert leftovers == []


def test_failed_download_says_so_and_leaves_nothing_behind(
    isolated_data: Path, local_mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = local_mirror  # serves an empty folder: every file is a 404
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", [url])
    with pytest.raises(DataError, match="downloading failed") as caught:
        data.load_builtin("fashion-mnist", None, allow_download=True)
    assert "apt-get install dataset-fashion-mnist" in str(caught.value)
    cache = isolated_data / "cache" / "lrfind"
    assert not (cache / "fashion-mnist").exists()
    assert not any(path.name.startswith(".download-") for path in cache.iterdir())


def test_batches_are_normalised_shuffled_reproducible_and_complete(mnist_dir: Path) -> None:
    loaded = data.load_builtin("mnist", mnist_dir, allow_download=False)
    batches = data.TensorBatches(loaded, batch_size=64, seed=3, device=torch.device("cpu"))
    first_pass = list(batches)
    assert len(first_pass) == len(batches) == 600 // 64
    assert all(inputs.shape == (64, 1, 28, 28) for inputs, _ in first_pass)
    everything = torch.cat([inputs for inputs, _ in first_pass])
    assert abs(float(everything.mean())) < 0.05
    assert abs(float(everything.std()) - 1.0) < 0.05
    again = list(data.TensorBatches(loaded, batch_size=64, seed=3, device=torch.device("cpu")))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first_pass, again, strict=True))
    second_pass = list(batches)
    assert not torch.equal(first_pass[0][1], second_pass[0][1])
    labels = torch.cat([targets for _, targets in first_pass])
    assert len(set(labels.tolist())) == 10


def test_batch_larger_than_the_dataset_is_refused(mnist_dir: Path) -> None:
    loaded = data.load_builtin("mnist", mnist_dir, allow_download=False)
    with pytest.raises(DataError, match="batch_size 1000 is larger than the dataset"):
        data.TensorBatches(loaded, batch_size=1000, seed=0, device=torch.device("cpu"))


def write_factory(tmp_path: Path, body: str) -> Path:
    imports = "import torch\nfrom torch.utils.data import TensorDataset\n"
    return write_python(tmp_path / "user_data.py", body, imports)


def test_user_dataset_factory(tmp_path: Path) -> None:
    path = write_factory(
        tmp_path,
        "def make():\n    return TensorDataset(torch.randn(40, 3, 8, 8), torch.arange(40) % 4)\n",
    )
    user = userdata.load_user_dataset(f"{path}:make")
    assert user.input_shape == (3, 8, 8)
    assert user.num_classes == 4  # from its label tensor: labels 0..3
    assert user.num_classes_from is not None and "TensorDataset" in user.num_classes_from
    loader = userdata.user_loader(user, batch_size=16, seed=0)
    assert [inputs.shape[0] for inputs, _ in loader] == [16, 16]


def test_user_dataset_factory_returning_the_wrong_type(tmp_path: Path) -> None:
    path = write_factory(tmp_path, "def make():\n    return {'x': 1}\n")
    with pytest.raises(SpecError, match=r"returned a dict, not a torch\.utils\.data\.Dataset"):
        userdata.load_user_dataset(f"{path}:make")


def test_unknown_dataset_lists_the_valid_ones() -> None:
    with pytest.raises(SpecError, match="fashion-mnist, mnist") as caught:
        userdata.check_dataset_spec("cifar")
    assert "torchvision:<Class>" in str(caught.value) and "folder:PATH" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "spec_suffix", "message"),
    [
        ("def make():\n    raise OSError('no such bucket')\n", ":make",
         "raised OSError: no such bucket"),
        ("def make():\n    return []\n", ":other", "has no function 'other'"),
    ],
)  # fmt: skip
def test_user_dataset_factories_that_fail_are_explained(
    tmp_path: Path, body: str, spec_suffix: str, message: str
) -> None:
    path = write_factory(tmp_path, body)
    with pytest.raises(SpecError, match=message):
        userdata.load_user_dataset(f"{path}{spec_suffix}")


def test_a_missing_dataset_factory_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        userdata.load_user_dataset(f"{tmp_path}/absent.py:make")


# ---------------------------------------------------------------------------------------------
# torchvision datasets by name: KMNIST reads raw IDX files (no checksum) from root/KMNIST/raw


def test_a_torchvision_dataset_by_name_gives_float_tensors_from_its_pil_images(
    tmp_path: Path,
) -> None:
    root = write_torchvision_mnist(tmp_path / "data", "KMNIST")
    user = userdata.load_user_dataset("torchvision:KMNIST", data_dir=root, allow_download=False)
    assert (user.input_shape, user.target_shape) == ((1, 28, 28), ())
    assert user.num_classes == 10 and user.num_classes_from == "the dataset's `classes` attribute"
    inputs, targets = next(iter(userdata.user_loader(user, batch_size=8, seed=0)))
    assert inputs.dtype == torch.float32 and inputs.shape == (8, 1, 28, 28)
    assert targets.dtype == torch.int64
    images, labels = learnable_images(64, 0)
    image, label = user.collate([user.dataset[5]])
    np.testing.assert_allclose(image[0, 0].numpy(), images[5] / 255.0, rtol=1e-6)
    assert int(label[0]) == labels[5]


def test_a_missing_torchvision_dataset_names_the_fixes(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        userdata.load_user_dataset(
            "torchvision:KMNIST", data_dir=tmp_path / "empty", allow_download=False
        )
    message = str(caught.value)
    assert "--no-download is set" in message and str(tmp_path / "empty") in message
    assert "--download" in message and "--data-dir FOLDER" in message
    assert "FOLDER/KMNIST/raw/" in message


def test_a_torchvision_dataset_is_downloaded_when_allowed(
    tmp_path: Path, local_mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder = local_mirror
    write_mnist_files(folder, train=64, test=16)  # gzipped, as the real mirrors serve them
    resources = [
        (path.name, hashlib.md5(path.read_bytes()).hexdigest()) for path in sorted(folder.iterdir())
    ]
    monkeypatch.setattr(torchvision.datasets.KMNIST, "mirrors", [url])
    monkeypatch.setattr(torchvision.datasets.KMNIST, "resources", resources)
    root = tmp_path / "data"

    user = userdata.load_user_dataset("torchvision:KMNIST", data_dir=root, allow_download=True)

    assert len(user.dataset) == 64
    assert (root / "KMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_a_failed_torchvision_download_says_what_failed(
    tmp_path: Path, local_mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = local_mirror  # an empty folder: every file is a 404
    monkeypatch.setattr(torchvision.datasets.KMNIST, "mirrors", [url])
    with pytest.raises(DataError, match="downloading it failed") as caught:
        userdata.load_user_dataset("torchvision:KMNIST", data_dir=tmp_path, allow_download=True)
    assert "--data-dir FOLDER" in str(caught.value)


def test_the_torchvision_root_defaults_to_the_cache(
    isolated_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert userdata.torchvision_root(None) == isolated_data / "cache" / "lrfind"
    monkeypatch.setenv("LRFIND_DATA_DIR", str(isolated_data / "elsewhere"))
    assert userdata.torchvision_root(None) == isolated_data / "elsewhere"
    assert userdata.torchvision_root(isolated_data / "given") == isolated_data / "given"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("torchvision:cifar10", "Did you mean torchvision:CIFAR10"),
        ("torchvision:NoSuchSet", "all of them: "),
        ("folder:/no/such/folder", "is not a folder"),
    ],
)
def test_bad_torchvision_and_folder_specs_fail_before_any_data(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        userdata.check_dataset_spec(spec)


def test_the_new_spec_forms_are_accepted(tmp_path: Path) -> None:
    for spec in ("torchvision:CIFAR10", "torchvision:FashionMNIST", f"folder:{tmp_path}"):
        userdata.check_dataset_spec(spec)


# ---------------------------------------------------------------------------------------------
# Image folders


def test_an_image_folder_is_read_as_rgb_tensors_with_its_classes(tmp_path: Path) -> None:
    from PIL import Image

    root = write_image_folder(tmp_path / "images", {"cat": [(6, 4)] * 3, "dog": [(6, 4)] * 2})
    user = userdata.load_user_dataset(f"folder:{root}")
    assert (user.input_shape, user.num_classes) == ((3, 4, 6), 2)
    assert user.source == str(root)
    inputs, labels = user.collate([user.dataset[index] for index in range(5)])
    assert labels.tolist() == [0, 0, 0, 1, 1]
    expected = np.asarray(Image.open(root / "dog" / "1.png")).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(inputs[4].numpy(), expected, rtol=1e-6)


def test_an_image_folder_of_mixed_sizes_is_refused_with_the_fix(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", {"a": [(8, 8), (8, 8)], "b": [(8, 8), (9, 8)]})
    with pytest.raises(DataError, match="image 3") as caught:
        userdata.load_user_dataset(f"folder:{root}")
    message = str(caught.value)
    assert "9x8 pixels" in message and "8x8" in message and "Resize" in message
    assert str(root / "b" / "1.png") in message


def test_a_folder_without_class_subfolders_says_how_it_is_laid_out(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="one subfolder per class"):
        userdata.load_user_dataset(f"folder:{tmp_path / 'flat'}")


def test_an_image_folder_with_a_file_that_is_no_image_names_it(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", {"a": [(4, 4)], "b": [(4, 4)]})
    (root / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot be read") as caught:
        userdata.load_user_dataset(f"folder:{root}")
    assert str(root / "b" / "broken.png") in str(caught.value)
