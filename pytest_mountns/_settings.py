"""The session's settings, from the command line and the ini file, checked once.

The command line wins over the ini file; the marker, closer still, wins over
both (``_policy``). A bad value is a usage error that names where it came from.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from . import _audit, _probe, _spec
from ._spec import DeclarationError

DEFAULT_TMPFS_SIZE = "64m"
MODES = ("fork", "inprocess")


@dataclass(frozen=True)
class Settings:
    isolate_all: bool
    require: bool
    userns: str
    tmpfs_size: str
    timeout: float | None
    mode: str
    hermetic: str = "off"


def timeout_option(value: str) -> float:
    """argparse's ``type=``: a bad value is a usage error that says why."""
    try:
        return _spec.parse_timeout(value, "--mountns-timeout")
    except DeclarationError as error:
        raise argparse.ArgumentTypeError(error.reason) from None


def read(config: pytest.Config) -> Settings:
    size = str(config.getini("mountns_tmpfs_size"))
    try:
        _spec.parse_amount(size, f"ini mountns_tmpfs_size={size!r}", allow_percent=True)
    except DeclarationError as error:
        raise pytest.UsageError(str(error)) from None
    userns = config.getoption("mountns_userns") or str(config.getini("mountns_userns"))
    if userns not in _probe.USERNS_MODES:
        choices = ", ".join(_probe.USERNS_MODES)
        raise pytest.UsageError(f"ini mountns_userns={userns!r}: must be one of {choices}")
    mode = config.getoption("mountns_mode") or str(config.getini("mountns_mode"))
    if mode not in MODES:
        raise pytest.UsageError(f"ini mountns_mode={mode!r}: must be one of {', '.join(MODES)}")
    hermetic = config.getoption("mountns_hermetic") or str(config.getini("mountns_hermetic"))
    if hermetic not in _audit.MODES:
        choices = ", ".join(_audit.MODES)
        raise pytest.UsageError(f"ini mountns_hermetic={hermetic!r}: must be one of {choices}")
    timeout = config.getoption("mountns_timeout")
    ini_timeout = str(config.getini("mountns_timeout")).strip()
    if timeout is None and ini_timeout:
        try:
            timeout = _spec.parse_timeout(ini_timeout, f"ini mountns_timeout={ini_timeout!r}")
        except DeclarationError as error:
            raise pytest.UsageError(str(error)) from None
    return Settings(
        isolate_all=bool(config.getoption("mountns_all") or config.getini("mountns_all")),
        require=bool(config.getoption("mountns_require") or config.getini("mountns_require")),
        userns=userns,
        tmpfs_size=size,
        timeout=timeout,
        mode=mode,
        hermetic=hermetic,
    )
