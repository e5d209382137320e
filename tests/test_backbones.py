"""The backbone seam (issue 23): SASRec beside NextItNet, every method on it by its mechanism,
and a backbone added as a plugin file (a tiny GRU) with the missing-site error."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from bench.cli import main
from bench.config import BackboneConfig, TrainConfig, build_run_config
from bench.datasets.synthetic import SyntheticOptions, generate
from bench.engine.backbone import build_encoder, check_sites
from bench.errors import BenchError
from bench.experiments.runner import checkpoint_payload, resume_method, run
from bench.methods._gates import masked
from bench.methods.base import module_key
from bench.methods.conure import FREE
from bench.registry import BACKBONES, METHODS, load_file, load_plugins
from bench.results.store import MethodRecord, RunStore
from tests.conftest import inputs_of, logits, synthetic_context, tiny_config

DATA = dict(n_users=200, n_items=40, seq_len=8, target_items=[20], classes=[3])
SASREC = BackboneConfig(embedding_dim=16, name="sasrec")
TRAIN = TrainConfig(epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def tasks():
    return generate(SyntheticOptions(**DATA)).tasks  # T1 next-item, T2 items, T3 classes


@pytest.fixture(scope="module")
def context(tasks):
    return synthetic_context(tasks, DATA["n_items"], SASREC, TRAIN)


def learnt(row, context, tasks, **options):
    torch.manual_seed(0)
    method = METHODS.get(row).build(context, {**METHODS.options(row, {}), **options})
    method.learn(tasks, context)
    return method


# --- SASRec itself ----------------------------------------------------------------------------

def test_sasrec_is_causal_handles_left_padding_and_uses_its_options():
    encoder = build_encoder(20, BackboneConfig(embedding_dim=16, name="sasrec", options={"n_blocks": 3})).eval()
    assert len(encoder.blocks) == 3 and encoder.blocks[0].attention.heads == 1
    x = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        h = encoder(x)
        changed_future = x.clone()
        changed_future[:, -1] = 7
        changed_past = x.clone()
        changed_past[0, 2] = 9
        assert torch.isfinite(h).all()
        assert torch.equal(encoder(changed_future)[:, :-1], h[:, :-1])  # t never sees t' > t
        assert not torch.allclose(encoder(changed_past)[0, 3:], h[0, 3:])  # but sees the past
        # padding keys are masked: the second row's items 3..6 with a 1, 2 prefix differ from
        # the first row's, whose prefix is padding
        assert not torch.allclose(h[0, 2:], h[1, 2:])


def test_backbone_config_is_checked_by_name_and_options():
    config = build_run_config({"backbone": {"name": "SASRec", "options": {"n_heads": 2}}})
    assert config.backbone.name == "sasrec"
    with pytest.raises(BenchError, match="unknown backbone 'lstm'"):
        build_run_config({"backbone": {"name": "lstm"}})
    with pytest.raises(BenchError, match="n_blockz"):
        build_run_config({"backbone": {"name": "sasrec", "options": {"n_blockz": 2}}})
    with pytest.raises(BenchError, match="backbone.options"):
        build_run_config({"backbone": {"options": {"n_heads": 2}}})  # NextItNet has no options


def test_t1_keys_and_memory_know_the_backbone(tasks):
    from bench.engine import t1cache
    from bench.experiments.memory import backbone_parameters

    keys = {name: t1cache.entry_key("t1", tasks[0], 40, BackboneConfig(name=name), TRAIN, 0,
                                    torch.device("cpu"))[0] for name in ("nextitnet", "sasrec")}
    assert keys["nextitnet"] != keys["sasrec"]
    two_heads = BackboneConfig(name="sasrec", options={"n_heads": 2})
    assert t1cache.entry_key("t1", tasks[0], 40, two_heads, TRAIN, 0, torch.device("cpu"))[0] != keys["sasrec"]
    # a NextItNet field SASRec does not read leaves its key alone (Conure's block on SASRec)
    pre_ln = BackboneConfig(name="sasrec", block="pre_ln", conv_bias=False)
    assert t1cache.entry_key("t1", tasks[0], 40, pre_ln, TRAIN, 0, torch.device("cpu"))[0] == keys["sasrec"]
    config = tiny_config()
    config.backbone = SASREC
    encoder = build_encoder(40, SASREC)
    assert backbone_parameters(config, 40) == sum(p.numel() for p in encoder.parameters()) + 41 * 16


# --- every method on SASRec -------------------------------------------------------------------

def test_every_method_runs_on_sasrec(tmp_path):
    config = tiny_config(methods=["all", "Conure+harnessinit"])
    config.backbone = SASREC
    config.train = TrainConfig(epochs=1, min_epochs=1, batch_size=64, lr=3e-3, patience=1)
    records = run(config, RunStore.create(config.to_dict(), tmp_path), progress=False)
    assert [r.method for r in records] == ["DNN", "SinMo", "SinMoAll", "FineSmax", "FineAll", "PeterRec",
                                          "MTL", "Conure", "Conure+harnessinit", "HAT", "TERACON", "DITTO"]
    for record in records:
        assert record.complete
        final = record.steps[-1]["scores"]
        assert all(torch.isfinite(torch.tensor(list(m.values()))).all() for m in final.values()), record.method
    # SASRec has dropout: every reported score is taken in eval mode, so the unpruned T1 model
    # of Conure with the harness's init (Conure+harnessinit-'s T1) scores exactly as the shared
    # T1 model the baselines report; Conure's default (released init) trains a T1 model of its own
    by_name = {record.method: record for record in records}
    t1 = records[0].tasks[0]
    shared = by_name["FineAll"].steps[0]["scores"][t1]
    assert by_name["Conure+harnessinit"].variants["Conure+harnessinit-"][t1] == shared
    assert by_name["Conure"].variants["Conure-"][t1] != shared


def test_conure_frozen_weights_stay_bit_identical_on_sasrec(tasks, context):
    method = METHODS.get("Conure").build(context, {"prune_ratio": 0.5})
    torch.manual_seed(0)
    sites = build_encoder(2, SASREC).weight_sites()
    history = []
    for step, task in enumerate(tasks):
        method.learn([task], context)
        owned = method.owned_convs()
        assert len(owned) == len(sites) == 12  # Q, K, V, O, W1, W2 of both blocks
        history.append((logits(method, tasks[:step + 1]), method.ownership(),
                        [o.weight.detach().clone() for o in owned]))
    final_logits, final_owner, final_weights = history[-1]
    for old_logits, owner, weights in history:
        for before, after in zip(old_logits, final_logits):
            assert torch.equal(before, after)  # earlier tasks' scores never change
        for before, after, own in zip(weights, final_weights, owner):
            assert torch.equal(before[own != FREE], after[own != FREE])  # owned weights frozen
    # the later tasks did train: some weight free after T1 moved
    first_owner, first_weights = history[0][1], history[0][2]
    assert any((before != after)[own == FREE].any()
               for before, after, own in zip(first_weights, final_weights, first_owner))
    # positions and norms are T1's, frozen
    assert not method.encoder.positions.weight.requires_grad


def test_fineall_moves_the_shared_weights_conure_freezes(tasks, context):
    """No method silently behaves as FineAll: FineAll's T2 model changes T1's attention
    weights; Conure's T1-owned ones stay exactly as T1 left them."""
    fineall = learnt("FineAll", context, tasks[:2])
    t1, t2 = (fineall.encoders[module_key(t)] for t in tasks[:2])
    assert not torch.equal(t1.blocks[0].attention.query.weight, t2.blocks[0].attention.query.weight)
    conure = METHODS.get("Conure").build(context, {})
    conure.learn(tasks[:1], context)
    query = conure.owned_convs()[0]
    kept = query.weight.detach().clone()
    owned_by_t1 = query.owner == 1
    conure.learn(tasks[1:2], context)
    assert torch.equal(query.weight[owned_by_t1], kept[owned_by_t1])
    assert not torch.equal(query.weight, kept)  # the free weights trained for T2


def test_hat_gates_change_outputs_and_ungated_weights_stay_frozen(tasks, context):
    method = learnt("HAT", context, tasks[:1])
    encoder = method.encoder
    assert method.used.shape == (4, 16)  # attention and feed-forward outputs of 2 blocks
    x = inputs_of(tasks[0])
    with torch.no_grad():
        encoder.eval()
        with masked(encoder, torch.ones(4, 16)):
            full = encoder(x)
        with masked(encoder, torch.zeros(4, 16)):
            closed = encoder(x)
    assert not torch.allclose(full, closed)
    ungated = {id(p): p.detach().clone() for p in method.ungated_parameters()}
    assert not any(p.requires_grad for p in method.ungated_parameters())
    gated = [encoder.blocks[0].attention.out.weight, encoder.blocks[0].feed_forward.outer.weight]
    before = [w.detach().clone() for w in gated]
    method.learn(tasks[1:2], context)
    assert all(torch.equal(p, ungated[id(p)]) for p in method.ungated_parameters())
    # the gated output projections did train for T2 (attenuated on the units T1 uses)
    assert all(not torch.equal(b, w) for b, w in zip(before, gated))


def test_teracon_masks_differ_per_task_and_change_outputs(tasks, context):
    method = learnt("TERACON", context, tasks[:2])
    net = method.net
    assert net.n_layers == 4 and net.d == 16
    x = inputs_of(tasks[0])
    with torch.no_grad():
        net.eval()
        h1, m1 = net.hidden(0, 50.0, x)
        h2, m2 = net.hidden(1, 50.0, x)
    assert not torch.equal(m1, m2) and not torch.allclose(h1, h2)


def test_peterrec_patches_exist_and_change_outputs_over_a_frozen_sasrec(tasks, context):
    method = learnt("PeterRec", context, tasks[:1])
    backbone = {name: p.detach().clone() for name, p in method.encoder.named_parameters()}
    method.learn(tasks[1:2], context)
    patches = method.patched_convs()
    assert len(patches) == 4 and all(len(p.patches) == 1 for p in patches)  # attention + FFN per block
    current = dict(method.encoder.named_parameters())
    assert all(torch.equal(value, current[name]) for name, value in backbone.items())
    with torch.no_grad():
        method.eval()
        x = inputs_of(tasks[1])
        assert not torch.allclose(method.encode(tasks[1], x), method.encode(tasks[0], x))


def test_hat_lngate_is_refused_on_sasrec_before_training(tmp_path, t1_cache_root):
    config = tiny_config(methods=["HAT+lngate"])
    config.backbone = SASREC
    with pytest.raises(BenchError) as error:
        run(config, RunStore.create(config.to_dict(), tmp_path), progress=False)
    message = str(error.value)
    assert "\n" not in message and "HAT+lngate" in message and "'sasrec'" in message and "norm_gates" in message
    assert not t1_cache_root.exists() or not any(t1_cache_root.iterdir())


# --- a backbone plugin ------------------------------------------------------------------------

GRU_PLUGIN = '''
"""A tiny GRU backbone: weight sites (its two projections) and a norm site only."""
import torch
from torch import nn

from bench.engine.backbone import Backbone, MaskableLinear, NormSlot, item_embedding
from bench.registry import BACKBONES


@BACKBONES.register("tinygru")
class TinyGRU(Backbone):
    def __init__(self, n_items, config):
        super().__init__()
        d = config.embedding_dim
        self.embedding = item_embedding(n_items, d)
        self.input_projection = MaskableLinear(d, 3 * d)
        self.hidden_projection = MaskableLinear(d, 3 * d)
        self.norm = nn.LayerNorm(d)

    def forward(self, inputs):
        x = self.input_projection(self.embedding(inputs))
        h = x.new_zeros(x.shape[0], x.shape[2] // 3)
        outputs = []
        for t in range(x.shape[1]):
            xr, xz, xn = x[:, t].chunk(3, dim=-1)
            hr, hz, hn = self.hidden_projection(h).chunk(3, dim=-1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            outputs.append(h)
        return self.norm(torch.stack(outputs, dim=1))

    def weight_sites(self):
        return [self.input_projection, self.hidden_projection]

    def norm_slots(self):
        return [NormSlot(self, "norm")]
'''


@pytest.fixture
def gru_plugin(tmp_path, monkeypatch):
    load_plugins()
    monkeypatch.setattr(BACKBONES, "_entries", dict(BACKBONES._entries))
    path = tmp_path / "tinygru.py"
    path.write_text(textwrap.dedent(GRU_PLUGIN))
    load_file(path)
    yield path
    sys.modules.pop("bench_plugin_tinygru", None)


def test_a_gru_plugin_runs_every_method_its_sites_support(tmp_path, gru_plugin):
    config = tiny_config(methods=["DNN", "SinMo", "SinMoAll", "FineSmax", "FineAll", "MTL", "Conure",
                                  "Conure+tasknorms"])
    config.backbone = BackboneConfig(embedding_dim=16, name="tinygru")
    config.train = TrainConfig(epochs=1, min_epochs=1, batch_size=64, lr=3e-3, patience=1)
    records = run(config, RunStore.create(config.to_dict(), tmp_path), progress=False)
    assert all(record.complete for record in records) and len(records) == 8


@pytest.mark.parametrize("method, site", [("HAT", "gates"), ("TERACON", "gates"), ("DITTO", "gates"),
                                          ("PeterRec", "patches")])
def test_a_method_needing_a_missing_site_is_one_error_before_training(tmp_path, capsys, gru_plugin,
                                                                      t1_cache_root, method, site):
    code = main(["--plugin", str(gru_plugin), "run", "--methods", f"FineAll,{method}",
                 "--set", "backbone.name=tinygru", "--set", "backbone.embedding_dim=8",
                 "--set", "dataset_options.n_users=60", "--results", str(tmp_path / "results"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == (f"error: method {method} needs the backbone's '{site}' sites "
                      f"({__import__('bench.engine.backbone', fromlist=['SITE_KINDS']).SITE_KINDS[site]}), "
                      "which backbone 'tinygru' does not have")
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("result.json"))
    assert not t1_cache_root.exists() or not any(t1_cache_root.iterdir())  # FineAll's T1 never trained


def test_check_sites_names_method_backbone_and_site():
    check_sites("Conure", ("weights",), SASREC)
    with pytest.raises(BenchError, match="method HAT needs the backbone's 'gates' sites .* backbone "
                                         "'nextitnet' does not have; .*backbone.block=post_ln"):
        check_sites("HAT", ("gates",), BackboneConfig(block="pre_ln"))


@pytest.mark.parametrize("row", ["Conure", "Conure+embprune", "PeterRec", "HAT", "TERACON", "DITTO"])
def test_a_learnt_method_on_sasrec_resumes_from_a_weights_only_checkpoint(tasks, context, tmp_path, row):
    """The runner's step checkpoint (state dict + plain data, loaded with weights_only=True)
    rebuilds the method on SASRec with its hooks at the sites: the same scores after loading."""
    method = learnt(row, context, tasks[:2])
    before = logits(method, tasks[:2])
    record = MethodRecord(row, [t.name for t in tasks], {t.name: t.primary_metric for t in tasks})
    torch.save(checkpoint_payload(method, record), tmp_path / "checkpoint.pt")
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    config = tiny_config()
    config.backbone = SASREC
    store = RunStore.create(config.to_dict(), tmp_path / "results")
    loaded, _ = resume_method(row, checkpoint, list(tasks), context, config, store)
    assert all(torch.equal(a, b) for a, b in zip(before, logits(loaded, tasks[:2])))


def test_sasrec_trains_with_the_sampled_loss(tmp_path):
    config = tiny_config(methods=["FineAll"])
    config.backbone = SASREC
    config.train = TrainConfig(epochs=1, min_epochs=1, batch_size=64, patience=1, loss="sampled")
    (record,) = run(config, RunStore.create(config.to_dict(), tmp_path), progress=False)
    assert record.complete and record.steps[-1]["scores"]


def test_no_method_names_a_backbone_attribute():
    """Methods use only the contract (bench/engine/backbone.py): their code reads no attribute
    of NextItNet's or SASRec's layers, directly or through getattr/setattr."""
    import ast
    from pathlib import Path

    import bench.methods

    layers = {"blocks", "conv1", "conv2", "norm1", "norm2", "act1", "act2", "gate1", "gate2", "patch1",
              "patch2", "prenorm_gate1", "prenorm_gate2", "pre_ln", "attention", "feed_forward",
              "attention_norm", "feed_forward_norm", "final_norm", "query", "value", "pre_ln"}
    # not "positions" or "key": TaskSwitchedMethod's own task positions, ModuleDict keys
    files = [Path(f) for folder in bench.methods.__path__ for f in Path(folder).glob("*.py")]
    files.append(Path(__file__).parents[1] / "bench" / "engine" / "context.py")
    assert len(files) > 10
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            named = []
            if isinstance(node, ast.Attribute):
                named.append(node.attr)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr")):
                named += [arg.value for arg in node.args[1:2] if isinstance(arg, ast.Constant)]
            for name in named:
                assert name not in layers, f"{path.name}:{node.lineno} names a backbone attribute: {name}"


def test_bench_list_shows_the_backbones_and_each_methods_mechanism(capsys):
    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    assert "sasrec" in out and "nextitnet" in out and "on sasrec" in out
    conure = next(line for line in out.splitlines() if line.startswith("Conure "))
    assert "weights" in conure and "attention (Q, K, V, O) and feed-forward weight matrices" in conure
    hat = next(line for line in out.splitlines() if line.startswith("HAT "))
    assert "gates" in hat and "attention and feed-forward outputs" in hat


def test_estimate_probes_the_configured_backbone(tmp_path, capsys):
    code = main(["run", "--methods", "Conure,HAT", "--set", "backbone.name=sasrec",
                 "--set", "backbone.embedding_dim=8", "--set", "dataset_options.n_users=80", "--estimate",
                 "--results", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0 and "Conure" in out and "HAT" in out and "total" in out
    assert not (tmp_path / "results").exists()  # an estimate writes nothing


def test_the_memory_check_counts_the_configured_backbone():
    from bench.experiments.memory import model_bytes

    config = tiny_config()
    nextitnet = model_bytes(config, 1000)
    config.backbone = BackboneConfig(embedding_dim=config.backbone.embedding_dim, name="sasrec",
                                     options={"n_blocks": 8})
    assert model_bytes(config, 1000) > nextitnet  # 8 attention blocks outweigh 2 conv blocks
