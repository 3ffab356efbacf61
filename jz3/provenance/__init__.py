"""Provenance of stage outputs: manifests and cache keys (a leaf package: imports no jz3 module).

Only the pipeline runner (jz3.pipeline.runner) writes manifests; stage modules never import this.
"""

from jz3.provenance.manifest import (
    MANIFEST,
    SCHEMA,
    absolutize,
    config_hash,
    jsonable,
    manifest_hash,
    read_manifest,
    relativize,
    write_manifest,
)

__all__ = ["MANIFEST", "SCHEMA", "absolutize", "config_hash", "jsonable", "manifest_hash", "read_manifest",
           "relativize", "write_manifest"]
