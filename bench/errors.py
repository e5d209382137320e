"""User-facing errors: the CLI prints their message on one line and exits with 2."""


class BenchError(Exception):
    """A problem with the user's input (names, config, data files), not a bug."""


class DataFormatError(BenchError):
    """A data file that cannot be parsed; the message names the file and line."""

    def __init__(self, path, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = path, line, problem


class WriteError(BenchError, OSError):
    """A file of the results could not be written (read-only folder, full disk).

    Also an OSError, so code that tolerates a failed write (the data cache) still does.
    """

    def __init__(self, path, error: OSError):
        OSError.__init__(self, error.errno, error.strerror or str(error), str(path))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


class DivergenceError(BenchError):
    """Training diverged: a non-finite loss or score. The runner prefixes the method's name."""

    def __init__(self, task: str, problem: str, epoch: int | None = None, step: int | None = None,
                 hint: str | None = None):
        """`hint`: what to try; by default lowering the lr or skipping non-finite steps (a
        message raised with skipping already on says what was tried instead)."""
        where = "" if epoch is None else f" at epoch {epoch}" + ("" if step is None else f", step {step}")
        hint = hint or "lower train.lr, or skip steps with a non-finite loss with --set train.nonfinite=skip"
        super().__init__(f"task {task}: {problem}{where}; {hint}")

    def of_method(self, method: str) -> "DivergenceError":
        """The same error, its message led by the method's name."""
        named = DivergenceError.__new__(DivergenceError)
        BenchError.__init__(named, f"{method}, {self}")
        return named
