"""A throwaway "third-party addon" for attribution tests."""
