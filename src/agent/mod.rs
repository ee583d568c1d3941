//! Agent runners and their supervision.
