"""Anycost Face Edit for Krita: Filter ▸ Anycost Face Edit…

Krita imports this package at start-up. The client package and the vendored pyzmq/msgpack wheels
that the installer put beside it go first on ``sys.path``; if they cannot be imported the plugin
still loads and its action explains how to repair the installation. When Krita's own ``krita`` module
cannot be imported (a virtual environment activated in the shell that started Krita hides PyQt) and Krita
still imports plugins, there is no window to explain it in: the plugin says so on Krita's standard error,
naming the environment. (Debian's Krita 5.1.5 imports no plugin at all then; the installer warns instead.)
Imported outside Krita (tests, tools), the modules are usable and nothing registers.
"""

from .vendor_paths import add_bundled_paths

add_bundled_paths()

try:
    from krita import Krita
except ImportError as _error:
    Krita = None
    if getattr(_error, "name", None) != "krita":  # inside Krita, whose own module failed (e.g. no PyQt5)
        from .environment import report_import_failure

        report_import_failure(_error)

if Krita is not None:
    try:
        from .extension import AnycostFaceEditExtension
    except ImportError as _missing:  # pyzmq/msgpack missing or built for another Python
        from .fallback import register_broken

        register_broken(_missing)
    else:
        Krita.instance().addExtension(AnycostFaceEditExtension(Krita.instance()))
