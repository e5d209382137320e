"""benchmarks/parity_teracon.py: the edits made to a copy of the released scripts, the score
parsing and the report (the runs themselves take minutes and are made by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("parity_teracon", ROOT / "benchmarks" / "parity_teracon.py")
parity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parity)

# The lines of the release that the edits touch (as in Sein-Kim/TERACON at the audited commit).
MODEL_PARA = "    model_para = {'dilated_channels': 256, 'dilations': [1,4,1,4,1,4,1,4,], 'kernel_size': 3}\n"
FAKE = {
    "train_task1.py": MODEL_PARA + "targets = torch.LongTensor(b[:, 1:]).view([-1])\n",
    "train_teracon.py": MODEL_PARA,
    "inference_past_tasks.py": MODEL_PARA,
    "teracon.py": "a = e(torch.tensor([0]).to(t.get_device()))\nt = torch.tensor([t_]).to(device)\n",
    "generator_hat_other.py": "a = e(torch.tensor([0]).to(t.get_device()))\nm = self.mask(torch.tensor([t]).to(device),s)\n",
    "utils.py": "", "data_loader.py": "",
}


def fake_release(directory: Path) -> Path:
    directory.mkdir()
    for name, text in FAKE.items():
        (directory / name).write_text(text)
    return directory


def test_the_copy_gets_the_listed_edits_and_the_checkout_is_untouched(tmp_path):
    source = fake_release(tmp_path / "TERACON")
    parity.patch_copy(source, tmp_path / "copy", 64, [1, 4])
    for name in ("train_task1.py", "train_teracon.py", "inference_past_tasks.py"):
        text = (tmp_path / "copy" / name).read_text()
        assert "'dilated_channels': 64" in text and "'dilations': [1, 4]" in text
    assert ".reshape([-1])" in (tmp_path / "copy" / "train_task1.py").read_text()
    assert "get_device" not in (tmp_path / "copy" / "teracon.py").read_text()
    assert "to(x.device)" in (tmp_path / "copy" / "generator_hat_other.py").read_text()
    assert all((source / name).read_text() == text for name, text in FAKE.items())
    assert "dilated_channels" in (tmp_path / "copy" / "EDITS.txt").read_text()


def test_a_release_without_the_expected_lines_is_refused(tmp_path):
    source = fake_release(tmp_path / "TERACON")
    (source / "train_teracon.py").write_text("model_para = {'dilated_channels': 128}\n")
    with pytest.raises(SystemExit, match="train_teracon.py .* has no"):
        parity.patch_copy(source, tmp_path / "copy", 64, [1, 4])
    (source / "utils.py").unlink()
    with pytest.raises(SystemExit, match="not a TERACON checkout"):
        parity.patch_copy(source, tmp_path / "copy", 64, [1, 4])


def test_scores_are_read_from_the_scripts_logs_and_compared_within_tolerance():
    ranked = "epoch: 0\nAccuracy mrr_5: 0.25\nepoch: 2\nAccuracy mrr_5: 0.5\nAccuracy mrr_20: 0.6\n"
    assert parity.last_score(ranked) == 0.5
    assert parity.last_score("epoch:0    accuracy(hit@1):51.823    best:51.823") == pytest.approx(0.51823)
    released = [{"final": [0.5] * 6, "diagonal": [0.6] * 6}, {"final": [0.7] * 6, "diagonal": [0.6] * 6}]
    harness = [{"final": [0.6] * 5 + [0.2], "diagonal": [0.63] * 6}] * 2
    table = parity.report(released, harness, "x")
    final = table.split("diagonal row")[0]
    assert "| difference | +0.000 | +0.000 | +0.000 | +0.000 | +0.000 | -0.400 |" in final
    assert "yes (0.141)" in final and "NO (0.141)" in final  # std 0.141 on the released side
    assert "NO (0.020)" in table.split("diagonal row")[1]  # 0.03 apart, no spread: 0.02 applies
