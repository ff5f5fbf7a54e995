"""The pure domain: envelopes, lifecycle, errors, registry. No I/O here."""
