"""XML at the edge: hardened parsing, XSD validation, SOAP envelopes."""
