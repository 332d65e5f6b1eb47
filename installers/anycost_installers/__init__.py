"""Installers of the host plugins: copying them into Krita (and GIMP), vendoring pyzmq/msgpack for the
host's Python, and building the zip that Krita's "Import Python Plugin from File…" accepts.

Used by ``anycost install|uninstall|package HOST``. ``staging`` holds what both hosts share (stage, then
swap in; the error, the report, the install record); ``krita`` and ``gimp`` only what is their host's.
"""
