"""Text to batches: IMDB, generated and any labelled text files or hub dataset, labels, the split,
truncation of long texts, tokenizing (cached) and the loaders."""
