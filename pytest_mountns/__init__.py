"""Run pytest tests in private Linux mount namespaces.

Use ``@pytest.mark.mountns``, the ``isolated_tmpfs`` fixture or
``pytest --mountns-all``; the plugin itself lives in ``pytest_mountns.plugin``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
