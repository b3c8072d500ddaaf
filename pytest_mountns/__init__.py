"""Run pytest tests in private Linux mount namespaces.

Use ``@pytest.mark.mountns``, the ``isolated_tmpfs`` and ``mountns`` fixtures,
or ``pytest --mountns-all``; the plugin itself lives in ``pytest_mountns.plugin``.
The warnings and the error below are what filters and ``except`` clauses name.
"""

from ._adapters import UnsupportedPluginWarning
from ._audit import HermeticReadOnlyWarning
from ._hermetic import Write
from ._imperative import MountNamespace
from ._inprocess import LeftoverThreadWarning
from ._isolation import LeftoverProcessWarning
from ._mountinfo import MountEntry
from ._output import output
from ._runner import ThreadsAtForkWarning
from ._spec import DeclarationError

__version__ = "0.1.0"
__all__ = [
    "DeclarationError",
    "HermeticReadOnlyWarning",
    "LeftoverProcessWarning",
    "LeftoverThreadWarning",
    "MountEntry",
    "MountNamespace",
    "ThreadsAtForkWarning",
    "UnsupportedPluginWarning",
    "Write",
    "__version__",
    "output",
]
