//! COPY/ADD file operations (being written).
