"""Process groups, DeepSpeed config building and tensor parallelism (AutoTP)."""

from jz3.parallel.dist import DistInfo, all_reduce_sum, barrier, init_distributed
from jz3.parallel.ds_config import batch_layout, build_ds_config

__all__ = ["DistInfo", "init_distributed", "barrier", "all_reduce_sum", "build_ds_config", "batch_layout"]
