"""
Coverage-guided fuzz targets (atheris) for simplemail's parsers: one module
per parser, each with a C{check(data)} that asserts the parser's properties.
See fuzz/README.rst.
"""
