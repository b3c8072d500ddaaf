"""Resolving declarations against the file system: where each mount lands, what may be made.

Pure lookups (``lstat``, ``readlink``), no namespace: the model follows paths
through the declared mounts as the kernel will once they are in place.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_mountns._plan import _unmappable_change, resolve
from pytest_mountns._spec import DeclarationError, parse_marker


def plan_of(base: Path, **kwargs: object) -> object:
    return resolve(parse_marker((), kwargs, str(base)))


def reason(base: Path, keep: dict[str, str] | None = None, **kwargs: object) -> str:
    with pytest.raises(DeclarationError) as excinfo:
        resolve(parse_marker((), kwargs, str(base)), keep=keep or {})
    return str(excinfo.value)


def test_a_target_below_a_bind_lies_in_the_source_and_is_never_made_there(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "src").mkdir()
    message = reason(
        tmp_path, tmpfs=[str(tmp_path / "mnt"), str(tmp_path / "mnt/b/nested")],
        bind={str(tmp_path / "mnt/b"): "src"},
    )  # fmt: skip
    assert f"in {str(tmp_path / 'src')!r}, the source of bind target" in message
    assert os.listdir(tmp_path / "src") == []


def test_a_target_below_a_bind_that_exists_in_the_source_is_fine(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "src/nested").mkdir(parents=True)
    plan = resolve(
        parse_marker(
            (),
            {"bind": {str(tmp_path / "mnt"): "src"}, "tmpfs": [str(tmp_path / "mnt/nested")]},
            str(tmp_path),
        )
    )
    assert [m.target for m in plan.mounts] == [str(tmp_path / "mnt"), str(tmp_path / "mnt/nested")]


def test_symlinks_are_followed_through_a_bind_source(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "src/real").mkdir(parents=True)
    (tmp_path / "src/link").symlink_to("real")
    plan = resolve(
        parse_marker(
            (),
            {"bind": {str(tmp_path / "mnt"): "src"}, "tmpfs": [str(tmp_path / "mnt/link")]},
            str(tmp_path),
        )
    )
    assert plan.mounts[1].target == str(tmp_path / "mnt/real")


def test_the_basetemp_must_be_reachable_without_writing_to_a_source(tmp_path: Path) -> None:
    basetemp = tmp_path / "tmp/basetemp"
    basetemp.mkdir(parents=True)
    (tmp_path / "src").mkdir()
    keep = {str(basetemp): "pytest's basetemp"}
    message = reason(tmp_path, keep, bind={str(tmp_path / "tmp"): "src"})
    assert f"pytest's basetemp {str(basetemp)!r}: is not reachable" in message
    (tmp_path / "src/basetemp").mkdir()  # once the source has the directory, it binds back there
    declaration = parse_marker((), {"bind": {str(tmp_path / "tmp"): "src"}}, str(tmp_path))
    assert resolve(declaration, keep=keep).keep == (str(basetemp),)
    under_tmpfs = parse_marker((str(tmp_path / "tmp"),), {}, "/")
    assert resolve(under_tmpfs, keep=keep).keep == (str(basetemp),)
    elsewhere = parse_marker((str(tmp_path / "src"),), {}, "/")
    assert resolve(elsewhere, keep=keep).keep == ()


def test_a_target_that_would_resolve_otherwise_once_mounted_is_refused(tmp_path: Path) -> None:
    """The kernel follows a target's symlinks when it mounts it, after the mounts before it."""
    (tmp_path / "t/d/e").mkdir(parents=True)
    (tmp_path / "t/l").symlink_to("d/e")
    (tmp_path / "src").mkdir()
    (tmp_path / "src/e").symlink_to(tmp_path)
    message = reason(tmp_path, tmpfs=[str(tmp_path / "t/l")], bind={str(tmp_path / "t/d"): "src"})
    assert "once the mounts above it are in place" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="making files of another owner needs root")
def test_what_an_overlay_could_not_copy_up_in_a_user_namespace(tmp_path: Path) -> None:
    me, other = 1000, 0
    tree = tmp_path / "tree"
    (tree / "own").mkdir(parents=True)
    (tree / "own/file").write_text("x")
    for path in (tree, tree / "own", tree / "own/file"):
        os.chown(path, me, me)
    assert _unmappable_change(str(tree), me, me, {me}) is None
    (tree / "theirs").mkdir(mode=0o755)
    os.chown(tree / "theirs", other, other)
    assert _unmappable_change(str(tree), me, me, {me}) is None  # nothing in it is writable
    (tree / "theirs/mine").write_text("x")
    os.chown(tree / "theirs/mine", me, me)
    found = _unmappable_change(str(tree), me, me, {me})
    assert found == (str(tree / "theirs"), str(tree / "theirs/mine"))
