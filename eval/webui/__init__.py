"""A Gradio page to try a checkpoint on a query and candidate passages, and to browse results.

Start it with ``python -m eval.webui``; it serves on http://127.0.0.1:7860 by default.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
