"""Structural screening, one module per format: each walks a file's structure (chunks, segments,
directories, blocks) with ``struct``, ``bytes.find`` and compiled regular expressions, never byte
by byte in Python, and refuses (``UnsupportedImageFormat``, 415) what would make Pillow slow.

``app.imaging.formats.screen`` picks the module from the file's signature. Every limit here is
listed in docs/security.md with the cost it prevents.
"""
