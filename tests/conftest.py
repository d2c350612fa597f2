"""Shared fixtures and helpers for raftlog's tests."""
