"""A function loop and a session loop shared by a fixture and tests, with to_thread in both."""

import asyncio

import pytest
import pytest_asyncio


def blocking_add(a: int, b: int) -> int:
    return a + b


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def session_loop():
    return asyncio.get_running_loop()


@pytest.mark.asyncio
async def test_function_loop_to_thread():
    assert await asyncio.to_thread(blocking_add, 1, 2) == 3


@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop_to_thread(session_loop):
    assert asyncio.get_running_loop() is session_loop
    assert await asyncio.to_thread(blocking_add, 2, 3) == 5


@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop_to_thread_again(session_loop):
    assert asyncio.get_running_loop() is session_loop
    assert await asyncio.to_thread(blocking_add, 3, 4) == 7


@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop_sleeps(session_loop):
    await asyncio.sleep(0.01)
    assert asyncio.get_running_loop() is session_loop
