"""Two benchmarks of trivial functions and a test that benchmarks nothing."""


def add(a: int, b: int) -> int:
    return a + b


def test_add(benchmark):
    assert benchmark(add, 2, 3) == 5


def test_sorted_pedantic(benchmark):
    result = benchmark.pedantic(sorted, args=([3, 1, 2],), rounds=3, iterations=2)
    assert result == [1, 2, 3]


def test_no_benchmark():
    assert add(1, 1) == 2
