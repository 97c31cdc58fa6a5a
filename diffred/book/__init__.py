"""The book machinery: the chapter prologue (:mod:`~diffred.book.chapter`), parameter rules
(:mod:`~diffred.book.params`), results and provenance, and the command line.  May import the
core and the studies; nothing imports it but the package root."""
