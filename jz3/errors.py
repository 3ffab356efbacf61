"""Errors shared across stages (a leaf module: it imports nothing from jz3)."""

from __future__ import annotations


class StageFailed(RuntimeError):
    """A stage ran but produced nothing useful (every teacher request failed, 0 records kept).

    A stage function raises it instead of returning an empty result. The message is the cause in
    one line (e.g. `kd_seed: 0 of 20 requests succeeded: 20 x http_401 'Incorrect API key' from
    http://127.0.0.1:8000/v1`). The runner writes no success manifest for the stage, prints the
    message as its last line and exits non-zero, so that rerunning the same command retries.
    """
