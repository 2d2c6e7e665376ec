//! BuildKit's build checks (being written).
