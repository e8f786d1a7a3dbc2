"""Synthetic retrieval tasks and the tiny associative-recall model used by the bench and demo."""
