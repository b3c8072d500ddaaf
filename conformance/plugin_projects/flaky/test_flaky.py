"""flaky's own rerun loop: one test passes on its third run, one never does."""

from pathlib import Path

from flaky import flaky

HERE = Path(__file__).parent


def attempt(name: str) -> int:
    """Count this test's attempts in a file, so the count survives a forked child."""
    counter = HERE / f"attempts-{name}"
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    with (HERE / "journal.log").open("a") as journal:
        journal.write(f"{name} attempt {count}\n")
    return count


def test_passes():
    assert True


@flaky(max_runs=3)
def test_passes_on_third_run():
    assert attempt("third") >= 3


@flaky(max_runs=2)
def test_never_passes():
    attempt("never")
    raise AssertionError("always wrong")
