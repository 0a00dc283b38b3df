//! The RUN sandbox (being written).
