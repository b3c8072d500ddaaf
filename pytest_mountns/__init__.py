"""Run pytest tests in private Linux mount namespaces.

Use ``@pytest.mark.mountns``, the ``isolated_tmpfs`` and ``mountns`` fixtures,
or ``pytest --mountns-all``; the plugin itself lives in ``pytest_mountns.plugin``.
"""

from ._imperative import MountNamespace
from ._mountinfo import MountEntry
from ._output import output

__version__ = "0.1.0"
__all__ = ["MountEntry", "MountNamespace", "__version__", "output"]
