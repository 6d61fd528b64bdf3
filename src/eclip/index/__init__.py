"""Index: FAISS index directories (autotuned, sharded, incremental, GPU when there is one) and
the kNN self-join that finds candidates."""

from eclip.index.autotune import FLAT_MAX, choose_factory, recall_at_k
from eclip.index.search import cached_index, cached_self_join, index_info, knn_self_join
from eclip.index.store import IndexDir, add_to_index_dir, build_index_dir, merge_index_dir, open_index_dir

__all__ = [
    "FLAT_MAX",
    "IndexDir",
    "add_to_index_dir",
    "build_index_dir",
    "cached_index",
    "cached_self_join",
    "index_info",
    "choose_factory",
    "knn_self_join",
    "merge_index_dir",
    "open_index_dir",
    "recall_at_k",
]
