"""Documents as teams have them: a folder of PDF, Word, HTML and Markdown files -> a chunked corpus.

:mod:`~embedtune.documents.convert` turns one file into sections (heading path, page, text; tables as Markdown
tables), :mod:`~embedtune.documents.chunk` cuts sections to the model's token budget with stable ids, and
:mod:`~embedtune.documents.folder` walks a folder, caching conversions by content hash and listing the files it
had to skip.
"""
