"""Package layout only (metadata is in pyproject.toml).

The repository keeps the design card's top-level folders, but `methods/`, `datasets/` and
`backbones/` install as `bench.methods`, `bench.datasets` and `bench.backbones`: top-level names that generic would clash
with other packages (HuggingFace `datasets`). Every sub-package is found automatically.
"""

from setuptools import find_packages, setup

PACKAGE_DIR = {"bench": "bench", "bench.methods": "methods", "bench.datasets": "datasets",
               "bench.backbones": "backbones"}
# Data, not code: the published tables `bench reproduce` compares with ship inside the package.
DATA_DIR = {"bench.reference": "results/reference"}


def packages() -> list[str]:
    found = []
    for name, folder in PACKAGE_DIR.items():
        found += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
    return sorted(set(found))


setup(packages=packages() + list(DATA_DIR), package_dir={**PACKAGE_DIR, **DATA_DIR},
      package_data={name: ["*.json"] for name in DATA_DIR})
