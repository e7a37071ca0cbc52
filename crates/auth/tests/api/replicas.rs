//! (issue 16) placeholder: filled in this session.
