"""LocalAI for Python plugin: place backend processes on a Ray cluster.

``plugin`` holds the hooks (import-light: ``ray`` is imported only once a Ray address is set),
``cluster`` the kernel's Ray connection and backend handle, ``actor`` the Ray actor that runs
a backend process on a node.
"""

__version__ = "0.1.0"
