//! COPY/ADD and context hashing.
