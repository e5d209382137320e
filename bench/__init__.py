"""bench: a benchmark harness for continual user-representation learning.

It trains one user model on a sequence of tasks (next-item prediction, cross-domain
item recommendation, user-profile classification), records the performance matrix
R[i][j] after every task, and renders the comparison tables of Conure and TERACON.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

# Installed, `bench.methods`, `bench.datasets` and `bench.backbones` are the repository's
# top-level methods/, datasets/ and backbones/ folders (setup.py maps them). Run from a source checkout, this bench/ may be the
# one Python finds first, so look for them beside it too; site-packages has no setup.py.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "setup.py").is_file() and (_checkout / "methods" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821  (a package's own __path__)
