"""The one cache-or-parse path of the dataset adapters: parse once, reload after, say so on stderr."""

import numpy as np

from bench.datasets.cache import ArrayCache, load_or_build


def test_load_or_build_parses_once_then_reloads(tmp_path, capsys):
    calls = []

    def build():
        calls.append(1)
        return {"sequences": np.arange(6).reshape(2, 3)}, {"n_targets": [3]}

    cache = ArrayCache(tmp_path, "demo-key")
    arrays, meta, state = load_or_build(cache, build, "demo")
    assert state == "miss" and meta == {"n_targets": [3]}
    again, meta_again, state_again = load_or_build(ArrayCache(tmp_path, "demo-key"), build, "demo")
    assert state_again == "hit" and calls == [1] and meta_again == meta
    np.testing.assert_array_equal(again["sequences"], arrays["sequences"])
    _, _, off = load_or_build(None, build, "demo")
    assert off == "off" and calls == [1, 1]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "demo: cached the parsed arrays" in err[0] and "demo: loaded cached arrays" in err[1]
