"""The engine: tasks, the backbone contract (the backbones themselves are in backbones/), losses, the one training loop, metrics and the
context a method runs in. It knows nothing of files, commands or particular methods."""
