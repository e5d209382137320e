"""User-facing errors: the CLI prints their message on one line and exits with 2."""


class BenchError(Exception):
    """A problem with the user's input (names, config, data files), not a bug."""


class DataFormatError(BenchError):
    """A data file that cannot be parsed; the message names the file and line."""

    def __init__(self, path, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = path, line, problem
