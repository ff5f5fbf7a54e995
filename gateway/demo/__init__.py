"""``smevbus demo``: the whole bus in one process on the embedded default."""
