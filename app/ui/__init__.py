"""Switchboard's Qt GUI: a thin layer over `app.core`. The only package that imports Qt."""
