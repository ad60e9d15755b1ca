//! Blocking request handlers in the manner of Python's socketserver.
