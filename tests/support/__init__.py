"""Test support: throwaway servers (`servers`) and the pytest fixtures over them (`fixtures`)."""
