"""No storage password is printed or stored (issue 22, row 3).

Every command that touches an Optuna storage runs with passwords holding `/`, `@`, `%`, `:`
and non-ASCII characters, typed percent-encoded (as a user should) and as they are; then
stdout, stderr, every file under the test's folder (results, study database) and the study's
Optuna attributes are searched for the password, decoded and as typed, and for each of its
pieces. Servers are unreachable loopback ports, so no database server is needed.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from bench.cli import main
from bench.experiments import tuning
from bench.redaction import redact

PASSWORDS = {
    "slash": "Zq7x/Yw8k",
    "at": "Zq7x@Yw8k",
    "percent": "Zq7x%Yw8k",
    "colon": "Zq7x:Yw8k",
    "non-ascii": "Zq7xé€Yw8k",
    "all": "Zq7x/Yw8k@Vu9m%Ts6n:Rp5é",
}
SPELLINGS = {"encoded": lambda pw: quote(pw, safe=""), "as-is": lambda pw: pw}

TUNE = ["tune", "--method", "SinMo", "--trials", "1", "--quiet", "--startup-trials", "1"]
RUN = ["run", "--methods", "SinMo", "--quiet", "--device", "cpu"]
TINY = ["--epochs", "1", "--set", "dataset_options.n_users=40", "--set", "dataset_options.n_items=30",
        "--set", "dataset_options.target_items=[8]", "--set", "dataset_options.classes=[3]",
        "--set", "backbone.embedding_dim=8", "--set", "backbone.dilations=[1]"]

# storage-touching commands that fail: (argv before the URL, URL with {pw} for the typed password)
FAILING = {
    "tune, server unreachable": (TUNE + ["--storage"], "postgresql://u:{pw}@127.0.0.1:1/db"),
    "tune, driver missing": (TUNE + ["--storage"], "postgresql+psycopg2://u:{pw}@127.0.0.1:1/db"),
    "tune, bad port": (TUNE + ["--storage"], "postgresql://u:{pw}@127.0.0.1:port/db"),
    "run --use-tuned, server unreachable": (RUN + ["--use-tuned"], "postgresql://u:{pw}@127.0.0.1:1/db"),
    "run --use-tuned, driver missing": (RUN + ["--use-tuned"], "mysql+pymysql://u:{pw}@127.0.0.1:1/db"),
    "run --use-tuned, no study": (RUN + ["--use-tuned"], "sqlite:///{tmp}/none.db?password={pw}"),
}


def needles(password: str, typed: str) -> set[str]:
    """Spellings of the password a leak could show: decoded, as typed, JSON-escaped, and every
    piece of 3 or more letters and digits between its special characters."""
    found = {password, typed, quote(password, safe=""), quote(password)}
    found |= {json.dumps(text)[1:-1] for text in list(found)}
    found |= set(re.findall(r"\w{3,}", password))
    return found


def leaks(password: str, typed: str, *texts: str, folder: Path | None = None) -> list[str]:
    """Where any needle occurs: in the texts, or in any file under `folder`."""
    places = [(f"text {i}", text.encode()) for i, text in enumerate(texts)]
    if folder is not None:
        places += [(str(path), path.read_bytes()) for path in folder.rglob("*") if path.is_file()]
    return [f"{needle!r} in {where}" for needle in needles(password, typed)
            for where, content in places if needle.encode() in content]


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # trial folders of in-process runs
    monkeypatch.setattr(tuning.time, "sleep", lambda seconds: None)  # tune's retries of a failed connection
    return tmp_path


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("password", PASSWORDS.values(), ids=PASSWORDS.keys())
@pytest.mark.parametrize("argv, url", FAILING.values(), ids=FAILING.keys())
def test_failing_storage_commands_never_show_the_password(capsys, root, argv, url, password, spelling):
    typed = SPELLINGS[spelling](password)
    url = url.replace("{tmp}", str(root)).replace("{pw}", typed)
    code = main([*argv, url, *TINY, "--results", str(root / "results")])
    out, err = capsys.readouterr()
    assert code == 2 and "error:" in err, err
    assert not leaks(password, typed, out, err, folder=root), (err, leaks(password, typed, out, err, folder=root))


def test_a_tuned_run_stores_and_prints_no_password(capsys, root):
    """The stored case: a study tuned into, and a run reading from, a storage whose URL holds a
    secret (SQLite ignores `?password=`); the study's attributes hold none of it either."""
    password = PASSWORDS["all"]
    typed = quote(password, safe="")
    url = f"sqlite:///{root}/studies.db?password={typed}"
    results = ["--results", str(root / "results")]
    assert main([*TUNE, "--storage", url, *TINY, *results]) == 0
    assert main([*RUN, "--use-tuned", url, *TINY, *results]) == 0
    out, err = capsys.readouterr()
    assert (root / "studies.db").exists() and list((root / "results" / "runs").iterdir())
    study = tuning.open_study(url, "synthetic-SinMo")
    system = study._storage.get_study_system_attrs(study._study_id)
    attributes = json.dumps([study.user_attrs, system, *[[t.user_attrs, t.system_attrs, t.params]
                                                         for t in study.trials]], ensure_ascii=False)
    assert not leaks(password, typed, out, err, attributes, folder=root)


@pytest.mark.parametrize("password", PASSWORDS.values(), ids=PASSWORDS.keys())
def test_redact_hides_exactly_the_password_the_database_gets(password):
    from sqlalchemy.engine import make_url

    for typed in (quote(password, safe=""), password):
        url = f"postgresql://user:{typed}@db.example:5432/bench?sslmode=require"
        shown = redact(url)
        assert not leaks(password, typed, shown), shown
        if typed != password or password == PASSWORDS["slash"]:  # SQLAlchemy reads these as typed
            assert make_url(url).password == password
            assert shown == "postgresql://user:***@db.example:5432/bench?sslmode=require"
        else:  # an unencoded @ ends the password early, an unencoded % or : may not parse at all
            assert shown in ("postgresql://user:***@db.example:5432/bench?sslmode=require", "postgresql://***")
    assert redact("sqlite:///results/studies/x.db") == "sqlite:///results/studies/x.db"
    assert redact("journal:results/x.log") == "journal:results/x.log"
    assert redact("postgresql://u:pw@h:nope/db") == "postgresql://***"  # unparsable: all hidden
