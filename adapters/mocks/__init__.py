"""What the mock agencies share: the failure switches tests and the demo flip."""
