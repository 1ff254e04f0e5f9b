"""Corpora and prompt sets, streamed: built-in offline text, local files, Hugging Face datasets."""

from .corpus import Corpus, load_corpus
from .packing import SequenceUnit, batches, packed_sequences, packed_with_documents, sequence_units

__all__ = [
    "Corpus",
    "SequenceUnit",
    "batches",
    "load_corpus",
    "packed_sequences",
    "packed_with_documents",
    "sequence_units",
]
