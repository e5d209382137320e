import numpy as np
import pytest

from bench.errors import BenchError, DataFormatError
from bench.engine.tasks import TaskKind
from bench.datasets.synthetic import SyntheticOptions, generate
from bench.datasets.ttl_format import format_line, parse_line, read_dataset, read_lines, write_dataset
from tests.conftest import TINY_DATA


def test_line_round_trip():
    line = format_line([0, 0, 17, 4, 92], [311, 5])
    assert line == "0,0,17,4,92,,311 5"
    assert parse_line(line) == ([0, 0, 17, 4, 92], [311, 5])
    assert parse_line("0,3,4") == ([0, 3, 4], [])
    assert parse_line("0,3,4,,7,8") == ([0, 3, 4], [7, 8])  # comma-separated targets


def test_dataset_round_trip_is_exact(tmp_path):
    dataset = generate(SyntheticOptions(**TINY_DATA))
    write_dataset(dataset, tmp_path)
    again = read_dataset(tmp_path)
    assert again.n_items == dataset.n_items
    assert [t.name for t in again.tasks] == [t.name for t in dataset.tasks]
    for original, loaded in zip(dataset.tasks, again.tasks):
        assert loaded.kind == original.kind and loaded.n_targets == original.n_targets
        for split in ("train", "valid", "test"):
            np.testing.assert_array_equal(loaded.split(split).inputs, original.split(split).inputs)
            np.testing.assert_array_equal(loaded.split(split).targets, original.split(split).targets)
    assert (tmp_path / "T1.train.txt").read_text().splitlines()[0].count(",,") == 0
    assert dataset.tasks[1].kind is TaskKind.ITEM
    assert (tmp_path / "T2.train.txt").read_text().splitlines()[0].count(",,") == 1


@pytest.mark.parametrize("content, problem", [
    ("0,1,2,,3\n0,1,x,,3\n", "non-integer"),
    ("0,1,2,,3\n0,1,,3\n", "ragged line"),
    ("0,1,2,,3\n0,1,2,,\n", "no target"),
    ("0,1,2,,3\n0,1,2\n", "missing ',,'"),
    ("0;1;2,,3\n", "non-integer"),
    ("", "no data lines"),
])
def test_malformed_files_name_the_file_and_line(tmp_path, content, problem):
    path = tmp_path / "T2.train.txt"
    path.write_text(content)
    with pytest.raises(DataFormatError) as error:
        read_lines(path, with_targets=True)
    assert problem in str(error.value)
    assert str(path) in str(error.value)
    if content:
        assert f"{path}:" in str(error.value)


def test_missing_file_and_manifest(tmp_path):
    with pytest.raises(BenchError, match="cannot read"):
        read_lines(tmp_path / "absent.txt", with_targets=False)
    with pytest.raises(BenchError, match="manifest.json"):
        read_dataset(tmp_path)
