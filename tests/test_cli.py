"""The CLI: help for every command, one-line errors with exit code 2 on bad input."""

import json
import re
import subprocess
import sys

import pytest

from bench.cli import COMMANDS, build_parser, main


# progress lines that may precede an error: data loading, and the T1 cache's one line per model
PROGRESS_LINE = re.compile(r"^(\[\s*\d+\.\ds\] \w+: |t1-cache: (training|loaded) )")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    """Exit 2 and stderr is exactly one `error:` line holding every fragment; the only other
    lines allowed before it are data-loading progress lines ("[  1.2s] ttl: reading ...")."""
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if not PROGRESS_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"] if command else ["--help"])
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_list_shows_methods_and_datasets(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for name in ("SinMo", "SinMoAll", "FineSmax", "FineAll", "DNN", "synthetic"):
        assert name in out
    synthetic_row = next(line for line in out.splitlines() if line.startswith("synthetic"))
    assert "TERACON" not in synthetic_row, "no dataset carries method settings chosen on test scores"


def test_unknown_method(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--methods", "SinMo,Nope", "--results", str(tmp_path))
    assert_one_line_error(code, err, "unknown method 'Nope'", "SinMoAll")
    assert not (tmp_path / "runs").exists(), "no run directory for a rejected configuration"


def test_unknown_dataset(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--dataset", "imaginary", "--results", str(tmp_path))
    assert_one_line_error(code, err, "unknown dataset 'imaginary'")


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "malformed config"),
    ('{"train": {"epochz": 3}}', "unknown setting(s) epochz"),
    ('{"seed": "zero"}', "expected an integer"),
    ('{"dataset_options": {"n_userz": 3}}', "unknown setting(s) n_userz"),
])
def test_bad_config_files(capsys, tmp_path, content, fragment):
    path = tmp_path / "config.json"
    path.write_text(content)
    code, _, err = run_cli(capsys, "run", "--config", str(path), "--results", str(tmp_path))
    assert_one_line_error(code, err, fragment)


@pytest.mark.parametrize("argv, fragment", [
    (["--order", "1,2,2,3,4,5"], "distinct task numbers"),
    (["--order", "1,2,x"], "--order expects"),
    (["--set", "nonsense"], "key=value"),
    (["--resume", "no-such-run"], "no run 'no-such-run'"),
    (["--device", "cuda:7"] , "device"),
])
def test_bad_arguments(capsys, tmp_path, argv, fragment):
    code, _, err = run_cli(capsys, "run", *argv, "--results", str(tmp_path))
    assert_one_line_error(code, err, fragment)


def test_run_then_table(capsys, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({
        "dataset_options": {"n_users": 200, "n_items": 30, "seq_len": 8, "target_items": [20, 10]},
        "backbone": {"embedding_dim": 16, "dilations": [1]},
        "train": {"epochs": 1},
        "device": "cpu",
    }))
    code, out, _ = run_cli(capsys, "run", "--methods", "sinmo,finesmax", "--config", str(config),
                           "--run-id", "cli-run", "--results", str(tmp_path), "--quiet", "--matrices")
    assert code == 0
    assert "| SinMo " in out and "| FineSmax " in out and "forgetting matrix" in out
    assert out.rindex("forgetting matrix") < out.index("Final performance")  # the table comes last
    assert out.rstrip().splitlines()[-1].startswith("| FineSmax ")
    stored = json.loads((tmp_path / "runs" / "cli-run" / "config.json").read_text())
    assert stored["methods"] == ["SinMo", "FineSmax"] and stored["seed"] == 0
    code, again, _ = run_cli(capsys, "table", "cli-run", "--results", str(tmp_path))
    assert code == 0 and "T4 Acc" in again and "forgetting matrix" not in again
    code, _, err = run_cli(capsys, "run", "--config", str(config), "--run-id", "cli-run",
                           "--results", str(tmp_path), "--quiet")
    assert_one_line_error(code, err, "exists already")


def stored_config(tmp_path, run_id):
    return json.loads((tmp_path / "runs" / run_id / "config.json").read_text())


def test_dataset_method_defaults_sit_under_the_users_settings(capsys, tmp_path, monkeypatch):
    from bench.datasets.synthetic import Synthetic

    monkeypatch.setattr(Synthetic, "method_defaults", {"TERACON": {"alpha": 3.0, "smax": 20.0}})
    common = ["--methods", "dnn", "--epochs", "1", "--device", "cpu", "--quiet", "--results", str(tmp_path),
              "--set", "dataset_options.n_users=100", "--set", "dataset_options.n_items=20"]
    assert run_cli(capsys, "run", *common, "--run-id", "plain")[0] == 0
    # preset (quick: rows) < dataset (alpha, smax) < user
    assert stored_config(tmp_path, "plain")["method_options"] == {"TERACON": {"alpha": 3.0, "smax": 20.0,
                                                                              "rows": "expected"}}
    # the user's value wins, whatever case the method name is written in
    assert run_cli(capsys, "run", *common, "--run-id", "mine", "--set", "method_options.teracon.alpha=0.7")[0] == 0
    assert stored_config(tmp_path, "mine")["method_options"] == {"TERACON": {"alpha": 0.7, "smax": 20.0,
                                                                             "rows": "expected"}}


def test_settings_for_an_unknown_method_are_an_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--set", "method_options.Conur.prune_ratio=0.5",
                           "--results", str(tmp_path))
    assert_one_line_error(code, err, "method_options", "unknown method 'Conur'")


def test_list_method_shows_each_default_and_its_source(capsys):
    code, out, _ = run_cli(capsys, "list", "teracon")
    assert code == 0 and out.startswith("TERACON: ")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[4:] if line.strip()}
    assert rows["alpha"] == ["0.7", "paper"] and rows["smax"] == ["50.0", "paper"]
    code, out, _ = run_cli(capsys, "list", "TERACON", "--dataset", "ttl")
    assert code == 0 and any(line.split() == ["alpha", "0.7", "preset", "paper"] for line in out.splitlines())
    code, _, err = run_cli(capsys, "list", "Conur")
    assert_one_line_error(code, err, "unknown method 'Conur'")


def test_data_info_takes_set_like_run(capsys):
    code, out, _ = run_cli(capsys, "data", "info", "synthetic", "--set", "dataset_options.n_users=120")
    assert code == 0
    t1 = next(line for line in out.splitlines() if line.startswith("T1 "))
    assert t1.split()[3] == "120"  # instances of T1: one per user
    code, _, err = run_cli(capsys, "data", "info", "synthetic", "--set", "dataset_options.n_userz=5")
    assert_one_line_error(code, err, "n_userz")


def test_bars_only_on_a_terminal_or_when_asked(capsys, tmp_path):
    tiny = ["run", "--methods", "FineSmax", "--epochs", "1", "--device", "cpu", "--results", str(tmp_path),
            "--set", "dataset_options.n_users=100", "--set", "dataset_options.n_items=20"]
    code, out, err = run_cli(capsys, *tiny, "--run-id", "log")  # capsys: stderr is not a terminal
    assert code == 0 and "\r" not in err and "FineSmax: learnt T1-sequence" in err
    assert re.search(r"^\[ *\d+\.\ds\] FineSmax: learnt T2-\S+ in \d+\.\ds$", err, re.MULTILINE)  # elapsed, step time
    assert out.rstrip().splitlines()[-1].startswith("| FineSmax ")
    code, _, err = run_cli(capsys, *tiny, "--run-id", "bars", "--progress")
    assert code == 0 and "\r" in err and "methods:" in err
def test_smoke_limits_and_precision_are_recorded(capsys, tmp_path):
    common = ["--methods", "dnn", "--epochs", "1", "--device", "cpu", "--quiet", "--results", str(tmp_path),
              "--set", "dataset_options.n_users=100", "--set", "dataset_options.n_items=20"]
    assert run_cli(capsys, "run", *common, "--run-id", "smoke", "--limit-train-batches", "1",
                   "--limit-eval-users", "5", "--precision", "bf16", "--set", "train.loss=sampled",
                   "--protocol", "released")[0] == 0
    train = stored_config(tmp_path, "smoke")["train"]
    assert (train["limit_train_batches"], train["limit_eval_users"], train["precision"]) == (1, 5, "bf16")
    assert train["protocol"] == "released"
    assert train["loss"] == "sampled" and train["sampler"] == "log_uniform"
    code, _, err = run_cli(capsys, "run", *common, "--limit-eval-users", "0")
    assert_one_line_error(code, err, "--limit-eval-users", "positive")


def test_bad_loss_settings_are_one_line_errors(capsys, tmp_path):
    common = ["--methods", "dnn", "--epochs", "1", "--device", "cpu", "--quiet", "--results", str(tmp_path),
              "--set", "dataset_options.n_users=100", "--set", "dataset_options.n_items=20"]
    code, _, err = run_cli(capsys, "run", *common, "--set", "train.loss=sample")
    assert_one_line_error(code, err, "train.loss", "'sample'")
    code, _, err = run_cli(capsys, "run", *common, "--set", "train.negatives=0")
    assert_one_line_error(code, err, "train.negatives", ">= 1")


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`bench reproduce --list | grep -q X` closes the pipe before bench has written it all:
    bench stops quietly (141, as a writer ended by SIGPIPE), never with a traceback."""
    child = subprocess.Popen([sys.executable, "-m", "bench", "reproduce", "--list"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    child.stdout.close()  # the reader is gone before the first line
    stderr = child.stderr.read()
    assert child.wait() == 141, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
