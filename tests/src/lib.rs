//! Black-box integration tests for dreamnet-bus live in `tests/`.
