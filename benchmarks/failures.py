"""How the benchmark fails: a run that measured nothing, told by the end of its output."""


class BenchError(RuntimeError):
    """A run that did not measure what it should: not every test passed, or a helper failed."""


def tail(text: str, lines: int = 25) -> str:
    """The last ``lines`` lines of a command's output, which say why it failed."""
    return "\n".join(text.strip().splitlines()[-lines:])
