"""Verbatim: answers questions about a folder of documents with exact quotes and citations, offline."""
