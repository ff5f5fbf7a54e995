"""Hostile inputs to ``/ws``, shared by the in-process suite (``Router.handle``) and the
HTTP suite against a real gateway process: :mod:`.world` is what a case builder may use,
:mod:`.cases` the corpus."""
