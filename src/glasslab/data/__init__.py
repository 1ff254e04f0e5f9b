"""Corpora and prompt sets, streamed: built-in offline text, local files, Hugging Face datasets."""

from .corpus import Corpus, load_corpus
from .packing import batches, packed_sequences, packed_with_documents

__all__ = ["Corpus", "batches", "load_corpus", "packed_sequences", "packed_with_documents"]
