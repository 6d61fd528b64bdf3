"""Index: a FAISS index over the embeddings, and the kNN self-join that finds candidates."""

from eclip.index.build import IndexSettings, KnnIndex, build_index, load_index, recall_at_k, save_index
from eclip.index.search import knn_self_join

__all__ = ["IndexSettings", "KnnIndex", "build_index", "knn_self_join", "load_index", "recall_at_k", "save_index"]
