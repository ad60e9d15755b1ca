//! Testing kit: run a protocol against an in-memory transport and a manual clock.
