"""Built-in backbones (sequence encoders), one file each, installed as `bench.backbones`."""
