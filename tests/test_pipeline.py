"""Pipeline helpers that the command-line tests do not reach directly."""

from __future__ import annotations

import gzip
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from lrfind.errors import DataError
from lrfind.setup import data
from tests.conftest import idx_bytes, learnable_images, write_idx, write_mnist_files


def test_prefetched_files_read_as_read_idx_reads_them_and_are_handed_over_once(
    tmp_path: Path,
) -> None:
    images, labels = learnable_images(50, seed=3)
    packed = write_idx(tmp_path / "images.gz", images)
    plain = write_idx(tmp_path / "labels", labels)
    prefetched = data.FilePrefetch([packed, plain])
    np.testing.assert_array_equal(data.read_idx(packed, prefetched), images)
    np.testing.assert_array_equal(data.read_idx(plain, prefetched), labels)
    assert prefetched.contents(packed) is None  # handed over: the bytes are not kept twice
    np.testing.assert_array_equal(data.read_idx(packed, prefetched), images)  # read again


def test_a_file_the_prefetch_cannot_read_is_reported_by_read_idx(tmp_path: Path) -> None:
    damaged = tmp_path / "train-images-idx3-ubyte.gz"
    compressed = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    damaged.write_bytes(compressed[: len(compressed) // 2])
    missing = tmp_path / "train-labels-idx1-ubyte.gz"
    prefetched = data.FilePrefetch([damaged, missing])
    with pytest.raises(DataError, match="damaged or truncated gzip") as caught:
        data.read_idx(damaged, prefetched)
    assert str(damaged) in str(caught.value)
    with pytest.raises(DataError, match="cannot read"):
        data.read_idx(missing, prefetched)


def test_a_prefetched_split_loads_as_one_read_from_disk(isolated_data: Path) -> None:
    folder = write_mnist_files(isolated_data / "mnist")
    prefetched = data.prefetch_builtin("mnist", folder)
    assert prefetched is not None
    loaded = data.load_builtin("mnist", folder, allow_download=False, prefetched=prefetched)
    again = data.load_builtin("mnist", folder, allow_download=False)
    assert torch.equal(loaded.images, again.images) and torch.equal(loaded.labels, again.labels)
    assert (loaded.mean, loaded.std) == (again.mean, again.std)
    assert data.prefetch_builtin("mnist", isolated_data / "nowhere") is None  # nothing to read
    assert data.prefetch_builtin("user_data.py:make", None) is None  # not a built-in dataset


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_statistics_are_numpys_mean_and_the_exact_deviation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(64, 28, 28), dtype=np.uint8) // rng.integers(1, 4)
    mean, std = data.pixel_statistics(images, torch.from_numpy(images.copy()))
    assert mean == float(images.mean(dtype=np.float64))  # to the bit: the sum is exact
    exact = statistics.pstdev(images.reshape(-1).tolist())  # exact sums, correctly rounded
    assert abs(std - exact) <= math.ulp(exact)
    assert abs(std - float(images.std(dtype=np.float64))) <= 4 * math.ulp(exact)


def test_pixel_statistics_of_other_types_are_numpys() -> None:
    images = np.linspace(-1.0, 3.0, 2 * 5 * 5).reshape(2, 5, 5).astype(">f4")
    mean, std = data.pixel_statistics(images, torch.zeros(0, dtype=torch.uint8))
    assert (mean, std) == (
        float(images.mean(dtype=np.float64)),
        float(images.std(dtype=np.float64)),
    )
