//! The follow-up sentinel: the coding agent appends JSON lines to `.cat-follow-ups.jsonl` in its
//! working directory; the worker tails it and publishes each complete, valid line as it lands.
