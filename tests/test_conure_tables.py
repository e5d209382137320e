"""Conure's published tables (Tables 2, 3, 5, 6) run through `bench reproduce`, Conure's released
initialisation (its default) and its embedding pruning (`Conure+embprune`, the paper's Table 5)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from bench.cli import main
from bench.config import BackboneConfig, TrainConfig
from bench.backbones.nextitnet import CausalConv1d, NextItNet
from bench.backbones.sasrec import SASRec
from bench.engine.backbone import TiedItemHead
from bench.engine.training import as_tensors
from bench.errors import BenchError
from bench.experiments import reproduce
from bench.methods.conure import FREE, OwnedEmbedding, released_head, released_init
from bench.registry import METHODS
from bench.datasets.synthetic import SyntheticOptions, generate
from tests.conftest import synthetic_context
from test_datasets import ttl_release

TINY = ["--epochs", "1", "--set", "backbone.embedding_dim=8", "--set", "backbone.dilations=[1]",
        "--set", "train.batch_size=64", "--device", "cpu"]
CONURE_TABLES = [f"conure-table{n}-{data}" for n in (2, 3, 5, 6) for data in ("ttl", "ml")]


# --- the tables as data ------------------------------------------------------------------

@pytest.mark.parametrize("name", CONURE_TABLES)
def test_every_conure_table_is_transcribed_from_its_table(name):
    reference = reproduce.load_reference(name)
    number = name.split("-")[1].removeprefix("table")
    assert reference.source["table"].startswith(f"Table {number} (")
    assert reference.published and set(reference.published) <= set(reference.rows())
    assert all(reference.published.values())  # no row left without a value


def test_published_values_match_the_paper():
    """Spot checks against the transcription (shared/research/conure-published-tables.md)."""
    t2 = reproduce.load_reference("conure-table2-ttl").published
    assert t2["Conure"] == {"T1": 0.0480, "T2": 0.0177, "T3": 0.0287, "T4": 0.7146, "T5": 0.9068, "T6": 0.6185}
    assert "T1" not in t2["MTL"] and t2["SinMoAll"]["T4"] == 0.5640 and t2["DNN"]["T6"] == 0.6003
    ml = reproduce.load_reference("conure-table2-ml")
    assert ml.tasks == ["T1", "T2", "T3"] and ml.published["Conure-"] == {"T1": 0.0637, "T2": 0.0183, "T3": 0.0347}
    t3 = reproduce.load_reference("conure-table3-ml").published
    assert t3["Conure- (no T2)"]["T3"] == 0.0334 and t3["Conure- (20%)"]["T3"] == 0.0309
    assert reproduce.load_reference("conure-table5-ttl").published["Conure+embprune"]["T3"] == 0.0295
    assert reproduce.load_reference("conure-table6-ml").published["FineAll"] == {"T1": 0.0654, "T2": 0.0193, "T3": 0.0321}


def test_table_rows_grids_and_the_methods_they_run():
    t3 = reproduce.load_reference("conure-table3-ttl")
    assert t3.run_methods() == ["Conure"]  # Conure- is Conure's extra row
    assert t3.rows() == ["Conure- (no T2)", "Conure-", "Conure- (no T2, 20%)", "Conure- (20%)"]
    orders = [settings["order"] for _, settings in t3.grids()]
    assert orders == [[1, 3], [1, 2, 3], [1, 3], [1, 2, 3]]
    t5 = reproduce.load_reference("conure-table5-ttl")
    assert t5.run_methods() == ["Conure+embprune"]
    assert reproduce.runnable("Conure+embprune-") == "Conure+embprune"
    with pytest.raises(BenchError, match="neither a method nor an extra row"):
        reproduce.runnable("-nothing")


def test_a_tables_settings_lie_under_the_users():
    t5 = reproduce.load_reference("conure-table5-ttl")
    config = reproduce.run_config(t5, {"backbone": {"embedding_dim": 8}}, None)
    assert config.order == [1, 2, 3] and config.methods == ["Conure+embprune"]
    assert config.backbone.embedding_dim == 8 and config.preset == "paper"
    assert reproduce.run_config(t5, {"order": [1, 2]}, None).order == [1, 2]  # the user's own wins


def test_list_shows_every_conure_table_and_its_setting(capsys):
    assert main(["reproduce", "--list"]) == 0
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(CONURE_TABLES) <= set(lines)
    assert "backbone.name=sasrec" in lines["conure-table6-ttl"] and "Table 6 (TTL)" in lines["conure-table6-ttl"]
    assert "4 grids: 'no T2', '', 'no T2, 20%', '20%'" in lines["conure-table3-ml"]


# --- the tables run on a tiny TTL export -----------------------------------------------------

def _reproduce(name, tmp_path, capsys, *extra):
    root = tmp_path / "ttl"
    if not root.exists():
        ttl_release(root, n_users=80)
    code = main(["reproduce", name, "--data-dir", str(root), "--results", str(tmp_path / "r"),
                 "--quiet", "--format", "plain", *TINY, *extra])
    return code, capsys.readouterr()


def _side_by_side_rows(out: str, reference) -> dict[tuple[str, str], list[str]]:
    """(row, task) -> the cells after them, for the table's rows (names may hold spaces)."""
    rows = {}
    for line in out.splitlines():
        for row in sorted(reference.rows(), key=len, reverse=True):
            if line.startswith(row + " "):
                cells = line[len(row):].split()
                if cells and cells[0] in [*reference.tasks, "Avg"]:
                    rows[(row, cells[0])] = cells[1:]
                break
    return rows


def _reproduced(name, tmp_path, capsys):
    """Run table `name` on the tiny export; (its reference, its side-by-side rows), after
    checking that it succeeded and printed every (row, task) of the table in order."""
    reference = reproduce.load_reference(name)
    code, captured = _reproduce(name, tmp_path, capsys)
    assert code == 0, captured.err
    rows = _side_by_side_rows(captured.out, reference)
    assert list(rows) == [(r, t) for r in reference.rows() for t in [*reference.tasks, "Avg"]]
    return reference, rows


@pytest.mark.parametrize("name", ["conure-table3-ttl", "conure-table5-ttl"])
def test_conure_table_runs_on_a_tiny_ttl_export(name, tmp_path, capsys):
    reference, rows = _reproduced(name, tmp_path, capsys)
    for row, values in reference.published.items():
        for task, value in values.items():  # columns: metric harness ± std seeds published difference
            metric, harness, _, seeds, published, difference = rows[(row, task)]
            assert published == f"{value:.4f}" and seeds == "1"
            assert float(difference) == pytest.approx(float(harness) - value, abs=2e-4)
    if name == "conure-table3-ttl":  # one sweep per grid, each with its own order and split
        runs = tmp_path / "r" / "runs"
        no_t2 = json.loads((runs / "reproduce-conure-table3-ttl-no-t2-s0" / "config.json").read_text())
        with_t2 = json.loads((runs / "reproduce-conure-table3-ttl-s0" / "config.json").read_text())
        small = json.loads((runs / "reproduce-conure-table3-ttl-no-t2-20-s0" / "config.json").read_text())
        assert no_t2["order"] == [1, 3] and with_t2["order"] == [1, 2, 3]
        assert small["order"] == [1, 3] and small["dataset_options"]["test_fraction"] == 0.75
    else:
        config = json.loads((tmp_path / "r" / "runs" / "reproduce-conure-table5-ttl-s0" / "config.json").read_text())
        assert config["method_options"]["Conure+embprune"]["prune_embedding"] is True


def test_table6_runs_on_the_sasrec_backbone(tmp_path, capsys):
    """Table 6 (a Transformer backbone) runs FineAll, Conure- and Conure on SASRec."""
    reference, rows = _reproduced("conure-table6-ttl", tmp_path, capsys)
    for row, values in reference.published.items():
        for task, value in values.items():
            assert rows[(row, task)][4] == f"{value:.4f}"  # the published column
    config = json.loads((tmp_path / "r" / "runs" / "reproduce-conure-table6-ttl-s0" / "config.json").read_text())
    assert config["backbone"]["name"] == "sasrec"


@pytest.mark.slow
def test_conure_table2_runs_on_a_tiny_ttl_export(tmp_path, capsys):
    reference, rows = _reproduced("conure-table2-ttl", tmp_path, capsys)
    assert rows[("Conure", "T1")][4] == "0.0480" and rows[("MTL", "T1")][1] == "–"


# --- released initialisation -----------------------------------------------------------------

DATA = dict(n_users=200, n_items=40, seq_len=8, target_items=[20], classes=[3, 2])


@pytest.fixture(scope="module")
def tasks():
    return generate(SyntheticOptions(**DATA)).tasks  # T1 next-item, T2 items, T3/T4 classes


@pytest.fixture(scope="module")
def context(tasks):
    return synthetic_context(tasks, DATA["n_items"], BackboneConfig(embedding_dim=16),
                             TrainConfig(epochs=1, batch_size=64))


def build_row(row, context, **options):
    torch.manual_seed(0)
    return METHODS.get(row).build(context, {**METHODS.options(row, {}), **options})


def test_released_initialisers_follow_the_tf_code(tasks):
    """ops.py L630-631: conv weights truncated normal 0.02 (cut at 2 sigma); the item table too;
    generator_prune_t1.py L27-28: T1 softmax N(0, 0.01), bias 0.1; later softmax truncated 0.02."""
    torch.manual_seed(0)
    encoder = released_init(NextItNet(2000, BackboneConfig(embedding_dim=64, block="pre_ln", conv_bias=False)))
    convs = torch.cat([m.weight.flatten() for m in encoder.modules() if isinstance(m, CausalConv1d)])
    assert convs.abs().max() <= 0.04 and convs.std().item() == pytest.approx(0.0176, abs=0.001)
    table = encoder.embedding.weight
    assert torch.all(table[0] == 0) and table.abs().max() <= 0.04
    assert table[1:].std().item() == pytest.approx(0.0176, abs=0.0005)
    t1 = released_head(tasks[0], encoder)
    assert t1.weight.shape[0] == tasks[0].output_size and torch.all(t1.bias == 0.1)
    assert t1.weight.std().item() == pytest.approx(0.01, abs=0.001)
    later = released_head(tasks[2], encoder)
    assert torch.all(later.bias == 0) and later.weight.abs().max() <= 0.04


def test_released_init_covers_every_weight_site_on_sasrec():
    """ops.py L912-923 (Q/K/V) and L544-549 (the feed-forward's conv1d): truncated normal 0.02,
    biases 0; the output projection drawn the same way; the item table too, padding row 0."""
    torch.manual_seed(0)
    encoder = released_init(SASRec(2000, BackboneConfig(name="sasrec", embedding_dim=64)))
    sites = encoder.weight_sites()
    assert len(sites) == 12  # 2 blocks x (Q, K, V, O, W1, W2)
    weights = torch.cat([site.weight.flatten() for site in sites])
    assert weights.abs().max() <= 0.04 and weights.std().item() == pytest.approx(0.0176, abs=0.001)
    assert all(torch.all(site.bias == 0) for site in sites)
    table = encoder.embedding.weight
    assert torch.all(table[0] == 0) and table.abs().max() <= 0.04


def test_conure_default_is_the_released_init_and_harnessinit_the_shared_recipe(tasks, context):
    released = build_row("Conure", context)
    released.learn(tasks[:2], context)
    head = released.heads[next(iter(released.heads))]
    assert released.options.init == "released"
    assert type(head) is nn.Linear and not torch.all(head.bias == 0.1)  # untied, and T1's retrain moved it

    harness = build_row("Conure+harnessinit", context)
    harness.learn(tasks[:1], context)
    assert harness.options.init == "harness"
    assert isinstance(harness.heads[next(iter(harness.heads))], TiedItemHead)
    backbone = dataclasses.replace(context.backbone, block="pre_ln", conv_bias=False)
    shared, _ = context.pretrained(tasks[0], backbone)  # the run's shared recipe on Conure's block
    assert torch.equal(harness.encoder.embedding.weight, shared.embedding.weight)
    assert not torch.equal(released.encoder.embedding.weight, shared.embedding.weight)


# --- pruning the embedding too (Table 5) ---------------------------------------------------------

@torch.no_grad()
def _logits(method, tasks):
    method.eval()
    return [method.scores(task, as_tensors(task.test, torch.device("cpu"))[0]) for task in tasks]


@pytest.mark.parametrize("row", ["Conure+embprune", "Conure+embprune+harnessinit"])
def test_embprune_prunes_the_table_and_keeps_old_tasks_exact(tasks, context, row):
    method = build_row(row, context, prune_ratio=0.5)
    history = []
    for step, task in enumerate(tasks[:3]):
        method.train()
        method.learn([task], context)
        table = method.encoder.embedding
        assert isinstance(table, OwnedEmbedding)
        history.append((_logits(method, tasks[:step + 1]), table.owner.clone(), table.table.detach().clone()))
    final_logits, final_owner, final_table = history[-1]
    for old_logits, owner, values in history:
        assert all(torch.equal(a, b) for a, b in zip(old_logits, final_logits))  # old scores exact
        kept = owner != FREE
        assert torch.equal(values[kept], final_table[kept])  # owned entries frozen
        assert torch.equal(owner[kept], final_owner[kept])
    # T1 keeps half of the table; T2 trains (changes) entries of its own in the freed half
    assert (history[0][1] == 1).float().mean().item() == pytest.approx(0.5, abs=0.01)
    t2_entries = history[1][1] == 2
    assert t2_entries.any() and not torch.equal(history[0][2][t2_entries], history[1][2][t2_entries])
    assert method.mask_entries() == sum(c.owner.numel() for c in method.owned_convs()) + final_owner.numel()


def test_without_embprune_the_table_never_moves_after_t1(tasks, context):
    method = build_row("Conure", context, prune_ratio=0.5)
    method.learn(tasks[:1], context)
    before = method.encoder.embedding.weight.detach().clone()
    method.learn(tasks[1:3], context)
    assert type(method.encoder.embedding) is nn.Embedding
    assert torch.equal(before, method.encoder.embedding.weight)
