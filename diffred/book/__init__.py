"""The book machinery: the chapter prologue and parameters (:mod:`~diffred.book.chapter`; the
rules live with each study), results and provenance, and the command line.  May import the
core and the studies; nothing imports it but the package root."""
