//! Framers: protocol adapters that cut a byte stream into lines or messages.
