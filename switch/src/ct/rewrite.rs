//! NAT on packet bytes (filled in by the rewrite work).
