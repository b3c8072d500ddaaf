"""The ``mountns`` fixture's object: mounts decided inside the test, like ``monkeypatch``.

Each call is checked as a marker's declaration would be, then mounted at
once in the test's own namespace, which ends with the test.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from . import _mountinfo, _namespace, _plan, _spec
from ._hermetic import Write
from ._mountinfo import MountEntry
from ._spec import Declaration, Mount

_Method = TypeVar("_Method", bound=Callable[..., object])


def _declaration_errors_at_the_call(method: _Method) -> _Method:
    """A bad argument fails at the test's own line, with the reason, as a marker's would:
    raised afresh here, in a frame pytest hides, it carries none of the plugin's frames."""

    @functools.wraps(method)
    def checked(*args: object, **kwargs: object) -> object:
        __tracebackhide__ = True
        try:
            return method(*args, **kwargs)
        except _spec.DeclarationError as error:
            raise _spec.DeclarationError(error.argument, error.reason) from None

    return cast(_Method, checked)


class MountNamespace:
    """The isolated test's mount namespace. Relative sources start at the test file's directory."""

    def __init__(self, base: str, only_own_ids: bool, writes: Callable[[], list[Write]]) -> None:
        self._base = base
        self._only_own_ids = only_own_ids
        self._writes = writes

    @_declaration_errors_at_the_call
    def tmpfs(self, path: str | os.PathLike[str], **options: object) -> Path:
        """A fresh tmpfs on ``path``, with options as a marker takes them (``size="16m"``)."""
        target = _spec.normalize_path(path, "mountns.tmpfs path")
        parsed = _spec.parse_tmpfs_options(options, f"mountns.tmpfs({target!r})")
        return self._mount(Mount("tmpfs", target, options=parsed))

    @_declaration_errors_at_the_call
    def bind(
        self,
        source: str | os.PathLike[str],
        target: str | os.PathLike[str],
        readonly: bool = False,
    ) -> Path:
        """Show ``source`` at ``target``; writes reach ``source`` unless ``readonly``."""
        kind = "ro_bind" if readonly else "bind"
        where = _spec.normalize_path(target, "mountns.bind target")
        origin = _spec.source_path(source, "mountns.bind source", self._base)
        return self._mount(Mount(kind, where, source=origin))

    @_declaration_errors_at_the_call
    def readonly(self, path: str | os.PathLike[str]) -> Path:
        """Make ``path`` and every mount below it read-only."""
        return self._mount(Mount("readonly", _spec.normalize_path(path, "mountns.readonly path")))

    @_declaration_errors_at_the_call
    def hide(self, path: str | os.PathLike[str]) -> Path:
        """Make a directory look empty, or a file look empty; read-only either way."""
        return self._mount(Mount("hide", _spec.normalize_path(path, "mountns.hide path")))

    @_declaration_errors_at_the_call
    def overlay(self, path: str | os.PathLike[str]) -> Path:
        """Copy-on-write over a directory: the test sees its writes, the host none of them."""
        return self._mount(Mount("overlay", _spec.normalize_path(path, "mountns.overlay path")))

    def writes(self) -> list[Write]:
        """In a hermetic test: what it wrote outside its declared mounts so far, each a
        ``path`` and a ``change`` (``created``, ``modified``, ``deleted``)."""
        return self._writes()

    def mounts(self) -> list[MountEntry]:
        """This namespace's mount table, parsed."""
        return _mountinfo.read()

    def _mount(self, mount: Mount) -> Path:
        ids = (os.getuid(), os.getgid()) if self._only_own_ids else None
        try:
            plan = _plan.resolve(Declaration({mount.target: mount}), ids=ids)
        except _spec.DeclarationError as error:
            method = "bind" if mount.kind == "ro_bind" else mount.kind
            raise _spec.DeclarationError(
                f"mountns.{method}: {error.argument}", error.reason
            ) from None
        [resolved] = plan.mounts
        _namespace.apply_one(resolved)
        return Path(resolved.target)
