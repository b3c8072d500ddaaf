"""Parsing and validating declarations: pure functions, no namespace needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_mountns._plan import resolve
from pytest_mountns._spec import (
    Declaration,
    DeclarationError,
    Mount,
    TmpfsOptions,
    merge,
    parse_amount,
    parse_marker,
    parse_tmpfs_options,
)


def reason_of(args: tuple[object, ...] = (), **kwargs: object) -> str:
    with pytest.raises(DeclarationError) as excinfo:
        resolve(parse_marker(args, kwargs, base="/"))
    return str(excinfo.value)


def tmpfs(target: str, **options: object) -> Mount:
    return Mount("tmpfs", target, options=TmpfsOptions(**options))  # type: ignore[arg-type]


def test_positional_and_list_targets_get_default_tmpfs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    declaration = parse_marker((str(a),), {"tmpfs": [b]}, base="/")
    assert declaration.mounts == {str(a): tmpfs(str(a)), str(b): tmpfs(str(b))}


def test_option_string_and_dict_forms_agree() -> None:
    from_string = parse_tmpfs_options("size=16m,mode=0700,uid=1,gid=2,nr_inodes=1k,ro,noexec", "x")
    from_dict = parse_tmpfs_options(
        {"size": "16m", "mode": 0o700, "uid": 1, "gid": 2, "nr_inodes": "1k", "ro": True,
         "noexec": True},
        "x",
    )  # fmt: skip
    assert from_string == from_dict
    assert from_string.mount_data() == "size=16m,nr_inodes=1k,mode=0700,uid=1,gid=2"
    assert from_string.ro and from_string.noexec


def test_nosuid_nodev_are_accepted_as_always_on() -> None:
    assert parse_tmpfs_options("nosuid,nodev,size=1m", "x") == TmpfsOptions(size="1m")
    with pytest.raises(DeclarationError, match="always on"):
        parse_tmpfs_options({"nosuid": False}, "x")


@pytest.mark.parametrize("size", ["1M", "50%", "4096", 4096, "1g", "100%"])
def test_good_sizes(size: object) -> None:
    assert parse_amount(size, "size", allow_percent=True)


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ("", "positive number"),
        ("0", "unlimited"),
        (0, "unlimited"),
        ("0k", "unlimited"),
        ("123bogus", "positive number"),
        ("banana", "positive number"),
        ("-5", "positive number"),
        (-5, "positive number"),
        (" -5", "positive number"),
        ("1m,exec", "positive number"),
        ("1m=2", "positive number"),
        (str(2**64), "too large"),
        (str(2**63 + 1), "too large"),
        ("9999999999g", "too large"),
        ("0%", "between 1% and 100%"),
        ("101%", "between 1% and 100%"),
        ("١٢", "positive number"),  # Arabic-Indic digits are not the kernel's digits
        (True, "int or a str"),
        (1.5, "int or a str"),
    ],
)
def test_bad_sizes_say_why(size: object, reason: str) -> None:
    with pytest.raises(DeclarationError, match=reason):
        parse_amount(size, "size", allow_percent=True)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ("frobnicate=1", "unknown option 'frobnicate'|frobnicate: unknown option"),
        ("exec", "unknown option"),
        ("size=1m,", "empty option"),
        ("size=1m,size=2m", "given twice"),
        ("ro=1", "is a flag"),
        ("mode=0800", "octal"),
        ({"mode": "rwx"}, "octal"),
        ({"mode": 0o10000}, "octal"),
        ({"uid": -1}, "between 0 and"),
        ({"uid": "root"}, "between 0 and"),
        ({"ro": "yes"}, "True or False"),
        (42, "must be a str or a dict"),
    ],
)
def test_bad_options_say_why(options: object, reason: str) -> None:
    with pytest.raises(DeclarationError, match=reason):
        parse_tmpfs_options(options, "tmpfs['/srv']")


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("relative/dir", "must be an absolute path"),
        ("/tmp/../etc", "'..' components"),
        ("", "empty"),
        (b"/tmp", "not bytes"),
        (42, "not int"),
        (None, "not NoneType"),
    ],
)
def test_bad_target_types_and_shapes(target: object, reason: str) -> None:
    assert reason in reason_of((target,))


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/", "would hide the whole file system"),
        ("//", "would hide the whole file system"),
        ("/proc", "/proc is the kernel's process file system"),
        ("/proc/sys", "/proc is the kernel's process file system"),
        ("/sys", "/sys is the kernel's sysfs"),
        ("/dev", "/dev holds the device nodes"),
    ],
)
def test_system_targets_are_refused(target: str, reason: str) -> None:
    assert reason in reason_of((target,))


def test_missing_target_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert "does not exist" in reason_of((str(missing),))
    assert not missing.exists()


def test_file_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert "is not a directory" in reason_of((str(tmp_path / "file"),))


def test_symlink_target_resolves_and_error_names_both(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    plan = resolve(parse_marker((str(tmp_path / "link"),), {}, base="/"))
    assert [m.target for m in plan.mounts] == [str(tmp_path / "real")]
    (tmp_path / "proc-link").symlink_to("/proc")
    message = reason_of((str(tmp_path / "proc-link"),))
    assert "resolves to '/proc'" in message


def test_pathlike_and_trailing_slashes_are_normalized(tmp_path: Path) -> None:
    declaration = parse_marker((tmp_path, f"{tmp_path}//"), {}, base="/")
    assert list(declaration.mounts) == [str(tmp_path)]


def test_unknown_keyword_and_wrong_shapes() -> None:
    assert "unknown keyword" in reason_of(frobnicate={"/a": "/b"})
    assert "list of paths or a mapping" in reason_of(tmpfs=42)
    assert "must be a mapping target -> source" in reason_of(bind=["/a"])
    assert "must be a list of paths" in reason_of(readonly={"/a": 1})


def test_a_single_path_counts_as_a_list(tmp_path: Path) -> None:
    declaration = parse_marker((), {"readonly": tmp_path, "tmpfs": str(tmp_path / "x")}, "/")
    assert declaration.mounts[str(tmp_path)].kind == "readonly"


def test_conflicting_duplicate_in_one_marker(tmp_path: Path) -> None:
    assert "declared twice" in reason_of((str(tmp_path),), tmpfs={str(tmp_path): "size=1m"})
    assert "declared twice" in reason_of((str(tmp_path),), hide=[str(tmp_path)])


def test_bind_sources_resolve_against_the_test_file_directory(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "target").mkdir()
    declaration = parse_marker((), {"ro_bind": {str(tmp_path / "target"): "data"}}, str(tmp_path))
    plan = resolve(declaration)
    assert plan.mounts == (Mount("ro_bind", str(tmp_path / "target"), str(tmp_path / "data")),)


def test_readonly_may_take_the_root_other_kinds_may_not() -> None:
    assert resolve(parse_marker((), {"readonly": ["/"]}, "/")).mounts == (Mount("readonly", "/"),)
    for kind in ("hide", "overlay"):
        assert "cannot be a mount target" in reason_of(**{kind: ["/"]})
    assert "cannot be a mount target" in reason_of(readonly=["/proc"])


def test_closest_marker_wins_per_target_whatever_its_kind() -> None:
    function = Declaration({"/a": tmpfs("/a", size="1m")})
    klass = Declaration({"/a": tmpfs("/a", size="2m"), "/b": Mount("hide", "/b")}, "slave")
    module = Declaration({"/b": tmpfs("/b", size="3m"), "/c": Mount("readonly", "/c")}, "private")
    assert merge([function, klass, module]) == Declaration(
        {"/a": tmpfs("/a", size="1m"), "/b": Mount("hide", "/b"), "/c": Mount("readonly", "/c")},
        "slave",
    )


def test_parents_before_children_and_nested_targets_need_not_exist(tmp_path: Path) -> None:
    inner = tmp_path / "not" / "yet"
    plan = resolve(parse_marker((str(inner), str(tmp_path)), {}, base="/"))
    assert [m.target for m in plan.mounts] == [str(tmp_path), str(inner)]
    assert not (tmp_path / "not").exists()
    assert plan.covers(str(tmp_path / "x")) and not plan.covers(os.path.dirname(tmp_path))
