"""jz3: the JiuZhang3.0 recipe (small data-synthesis models for math reasoning), end to end."""

__version__ = "0.1.0"
