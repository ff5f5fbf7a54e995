"""The ZAGS (civil registry) agency: its mock registry service, and later its bus adapter.

The registry's own SOAP interface is described by
``xsd/agencies/zags/zags-registry-1.0.wsdl``; :mod:`adapters.zags.mock` serves it from a
seeded data set (``python -m adapters.zags.mock_service --port N``).
"""
