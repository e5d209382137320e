"""The engine: tasks, the NextItNet backbone, losses, the one training loop, metrics and the
context a method runs in. It knows nothing of files, commands or particular methods."""
